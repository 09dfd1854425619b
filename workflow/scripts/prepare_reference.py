from elt.evaluate import prepare_reference
from elt.workflow import logged

with logged(snakemake.log[0]):
    prepare_reference(snakemake.params.data, snakemake.output.images, snakemake.output.manifest)
