from elt.sample import sample
from elt.workflow import logged

with logged(snakemake.log[0]):
    sample(snakemake.input[0], [int(snakemake.wildcards.loops)], snakemake.params.num, snakemake.params.seed,
           snakemake.output[0], threads=snakemake.threads)
