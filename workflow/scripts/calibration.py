import json
from pathlib import Path

import pandas as pd

from elt.harness.calibrate import latency_table, write_calibration
from elt.harness.paper_audit import with_intervals
from elt.harness.rule_log import logged
from elt.harness.schema import PAPER_PRIMARY

with logged(snakemake.log[0]):
    record = json.loads(Path(snakemake.input.efficiency).read_text())
    audit = json.loads(Path(snakemake.input.audit).read_text())
    results = with_intervals(pd.read_csv(snakemake.input.table), audit)
    write_calibration(
        latency_table(record["sampling"]),
        results,
        str(Path(snakemake.output.md).parent),
        sources={"efficiency": snakemake.input.efficiency, "results": snakemake.input.table},
        primary=PAPER_PRIMARY,
    )
