import json
from pathlib import Path

import pandas as pd

from elt.eval.embedded import SavedFeatures
from elt.files import atomic_path, write_json
from elt.harness.audit import audit, markdown, training_noise
from elt.harness.report import headline
from elt.harness.rule_log import logged
from elt.provenance import provenance

with logged(snakemake.log[0]):
    feature_files = {
        (run, int(loops)): path for (run, loops), path in zip(snakemake.params.targets, snakemake.input.features)
    }
    feature_files.update(zip(map(tuple, snakemake.params.plan_targets), snakemake.input.plan_features))
    features = SavedFeatures(feature_files, snakemake.params.references)
    timings = {
        group: json.loads(Path(path).read_text())
        for group, path in zip(snakemake.params.groups, snakemake.input.timings)
    }
    metrics = pd.read_csv(snakemake.input.metrics)
    result = audit(
        metrics,
        snakemake.params.settings,
        features,
        timings,
        plans=pd.read_csv(snakemake.input.plans),
        noise=training_noise(snakemake.input.reference),
    )
    prov = provenance()
    write_json(snakemake.output.json, {**result, "provenance": prov})
    with atomic_path(snakemake.output.md) as tmp:
        tmp.write_text(markdown(result, prov))
    write_json(snakemake.output.headline, headline(metrics, result))
