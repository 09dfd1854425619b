from elt.files import atomic_path
from elt.harness.report import plan_table
from elt.harness.rule_log import logged

with logged(snakemake.log[0]), atomic_path(snakemake.output[0]) as tmp:
    plan_table(snakemake.input, snakemake.params.runs).to_csv(tmp, index=False, float_format="%.6g")
