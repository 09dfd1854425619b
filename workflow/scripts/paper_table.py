from elt.harness.paper_table import paper_table
from elt.harness.rule_log import logged

with logged(snakemake.log[0]):
    paper_table(list(snakemake.input.records), snakemake.config, snakemake.params.settings, snakemake.output[0])
