import torch

from elt.evaluate import evaluate
from elt.provenance import write_json
from elt.runtime import profile_device
from elt.workflow import logged

with logged(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    write_json(snakemake.output.record, evaluate(snakemake.input.samples[0], snakemake.input.reference, snakemake.input.classifier,
                                                 snakemake.params.settings, snakemake.output.features, profile_device(snakemake.config)))
