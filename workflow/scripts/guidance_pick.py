from elt.eval.guidance_sweep import write_pick
from elt.harness.rule_log import logged

with logged(snakemake.log[0]):
    write_pick(
        list(snakemake.input.records),
        snakemake.wildcards.run,
        snakemake.params.loops,
        snakemake.params.seed,
        snakemake.output[0],
    )
