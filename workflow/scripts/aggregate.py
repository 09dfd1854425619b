from elt.harness.report import aggregate, write_table
from elt.harness.rule_log import logged
from elt.provenance import provenance

with logged(snakemake.log[0]):
    checkpoints = dict(zip(snakemake.params.runs, snakemake.input.checkpoints))
    table = aggregate(snakemake.input.evals, checkpoints)
    write_table(
        table,
        snakemake.output.csv,
        snakemake.output.provenance,
        snakemake.input.evals,
        {**provenance(), "config": snakemake.config},
    )
