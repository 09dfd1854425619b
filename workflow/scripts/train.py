import yaml

from elt import config
from elt.files import atomic_path
from elt.harness.rule_log import logged
from elt.train import launch

with logged(snakemake.log[0]):
    cfg = config.from_dict(snakemake.params.run_config)
    with atomic_path(snakemake.output.config) as tmp:
        tmp.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    # more than one GPU: torchrun ranks (DistributedDataParallel); the global batch stays train.batch_size
    launch(
        cfg, snakemake.output.checkpoint.rsplit("/", 1)[0], int(snakemake.resources.get("gpu", 0)), set_aside_stale=True
    )
