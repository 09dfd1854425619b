from pathlib import Path

from elt import config
from elt.data.shards import encode
from elt.harness.rule_log import logged

with logged(snakemake.log[0]):
    encode(
        config.from_dict(snakemake.params.run_config),
        "train",
        Path(snakemake.output[0]).parent,
        snakemake.params.shard_size,
        snakemake.params.batch_size,
        progress=False,
    )
