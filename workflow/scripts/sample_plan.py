from elt.sample import sample
from elt.schedule import parse_plan
from elt.workflow import logged

with logged(snakemake.log[0]):
    plan = parse_plan(snakemake.params.plan, snakemake.params.l_max)
    sample(snakemake.input[0], [plan], snakemake.params.num, snakemake.params.seed, snakemake.output[0], threads=snakemake.threads)
