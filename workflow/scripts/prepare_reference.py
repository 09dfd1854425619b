from elt.eval.embedded import prepare_reference
from elt.harness.rule_log import logged

with logged(snakemake.log[0]):
    prepare_reference(snakemake.params.data, snakemake.output.images, snakemake.output.manifest)
