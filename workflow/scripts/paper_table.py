from elt.protocol import paper_table
from elt.workflow import logged

with logged(snakemake.log[0]):
    paper_table(list(snakemake.input.records), snakemake.config, snakemake.output[0])
