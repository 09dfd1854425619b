from elt.eval.guidance_sweep import picked_guidance
from elt.harness.rule_log import logged
from elt.sample import sample

with logged(snakemake.log[0]):
    shard = snakemake.wildcards.shard
    # the evaluation's shards sample at the run's pick when the profile sweeps; a sweep's at its own scale
    pick = (snakemake.input.get("pick") or [None])[0]
    guidance = snakemake.params.guidance if snakemake.params.guidance is not None else picked_guidance(pick)
    loops = snakemake.params.get("loops") or int(snakemake.wildcards.loops)
    sample(
        snakemake.input.checkpoint,
        [loops],
        snakemake.params.num,
        snakemake.params.seed,
        snakemake.output[0].replace(f"shard_{shard}", "shard_{shard}"),
        threads=snakemake.threads,
        shards=snakemake.params.shards,
        only_shard=int(shard),
        guidance=guidance,
        labels=snakemake.params.labels,
    )
