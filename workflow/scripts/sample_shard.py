import numpy as np

from elt.eval.guidance_sweep import picked_guidance
from elt.harness.rule_log import logged
from elt.sample import sample

with logged(snakemake.log[0]):
    shard = snakemake.wildcards.shard
    # the evaluation's shards sample at the run's pick when the profile sweeps; a sweep's at its own scale
    pick = (snakemake.input.get("pick") or [None])[0]
    guidance = snakemake.params.guidance if snakemake.params.guidance is not None else picked_guidance(pick)
    loops = snakemake.params.get("loops") or int(snakemake.wildcards.loops)
    labels = snakemake.params.labels
    paired = snakemake.input.get("paired") or []
    if paired:  # an FVD protocol that conditions each generated clip on the label of the real clip in its place
        with np.load(paired[0]) as reference:
            labels = reference["labels"]
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
        labels=labels,
        sampling_steps=snakemake.params.steps,
    )
