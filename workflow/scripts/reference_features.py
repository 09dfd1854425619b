import torch

from elt.config import profile_device
from elt.eval.embedded import reference_features
from elt.harness.rule_log import logged

with logged(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    reference_features(
        snakemake.input.images,
        snakemake.input.classifier,
        snakemake.params.settings,
        snakemake.output[0],
        profile_device(snakemake.config),
    )
