from elt.eval.guidance_sweep import sweep_table
from elt.harness.rule_log import logged

with logged(snakemake.log[0]):
    sweep_table(list(snakemake.input.picks), snakemake.output[0])
