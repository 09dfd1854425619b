import torch

from elt.eval.embedded import train_domain_classifier
from elt.harness.rule_log import logged

with logged(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    train_domain_classifier(
        snakemake.params.data, snakemake.params.settings, snakemake.output.model, snakemake.output.record
    )
