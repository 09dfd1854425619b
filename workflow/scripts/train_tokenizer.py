import torch

from elt.data.tokens import tokenizer_step
from elt.harness.rule_log import logged

with logged(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    out = snakemake.output
    tokenizer_step(snakemake.params.data, snakemake.params.settings, out.tokenizer, out.record, out.tokens)
