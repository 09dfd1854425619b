import torch

from elt.data.tokens import tokenizer_step
from elt.harness.rule_log import logged
from elt.runtime import resolve_device

with logged(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    out = snakemake.output
    device = resolve_device((snakemake.config.get("runtime") or {}).get("device", "auto"))  # the profile's runtime
    tokenizer_step(snakemake.params.data, snakemake.params.settings, out.tokenizer, out.record, out.tokens, device)
