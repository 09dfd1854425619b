from elt.config import profile_device
from elt.eval.paper import evaluate_run
from elt.files import write_json
from elt.harness.rule_log import logged

with logged(snakemake.log[0]):
    write_json(
        snakemake.output[0],  # the record; an evaluation (not a sweep) also keeps its features
        evaluate_run(
            list(snakemake.input.shards),
            snakemake.params.settings,
            (snakemake.input.get("fvd_reference") or [None])[0],
            profile_device(snakemake.config),
            sweep=snakemake.params.sweep,
            features_npz=snakemake.output.get("features"),
        ),
    )
