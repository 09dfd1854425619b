import yaml

from elt import config
from elt.provenance import atomic_path
from elt.train import train
from elt.workflow import logged

with logged(snakemake.log[0]):
    cfg = config.from_dict(snakemake.params.run_config)
    with atomic_path(snakemake.output.config) as tmp:
        tmp.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    train(cfg, snakemake.output.checkpoint.rsplit("/", 1)[0], progress=False, set_aside_stale=True)
