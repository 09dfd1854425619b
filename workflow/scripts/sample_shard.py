from elt.harness.rule_log import logged
from elt.sample import sample

with logged(snakemake.log[0]):
    shard = snakemake.wildcards.shard
    sample(
        snakemake.input[0],
        [int(snakemake.wildcards.loops)],
        snakemake.params.num,
        snakemake.params.seed,
        snakemake.output[0].replace(f"shard_{shard}", "shard_{shard}"),
        threads=snakemake.threads,
        shards=snakemake.params.shards,
        only_shard=int(shard),
    )
