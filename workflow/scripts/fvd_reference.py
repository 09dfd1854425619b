from elt import codecs, config
from elt.config import profile_device
from elt.data.datasets import data_shape
from elt.eval.fvd import reference_features
from elt.harness.rule_log import logged

with logged(snakemake.log[0]):
    cfg = config.from_dict(snakemake.params.run_config)
    # a run on VQ tokens brings its tokenizer: the reconstruction FVD on the same real clips
    codec = codecs.for_run(cfg, data_shape(cfg)) if cfg.codec.tokenizer else None
    reference_features(
        cfg.data,
        snakemake.params.fvd,
        snakemake.params.seed,
        snakemake.output[0],
        codec=codec,
        device=profile_device(snakemake.config),
    )
