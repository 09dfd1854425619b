from elt import config
from elt.config import profile_device
from elt.eval.paper import fvd_reference_features
from elt.harness.rule_log import logged

with logged(snakemake.log[0]):
    fvd_reference_features(
        config.from_dict(snakemake.params.run_config).data,
        snakemake.params.clips,
        snakemake.output[0],
        device=profile_device(snakemake.config),
    )
