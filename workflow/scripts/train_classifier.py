import torch

from elt.evaluate import train_domain_classifier
from elt.workflow import logged

with logged(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    train_domain_classifier(snakemake.params.data, snakemake.params.settings, snakemake.output.model, snakemake.output.record)
