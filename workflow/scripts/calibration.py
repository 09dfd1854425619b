import json
from pathlib import Path

import pandas as pd

from elt.harness.calibrate import write_calibration
from elt.harness.efficiency import latency_table
from elt.harness.paper_audit import PRIMARY, with_intervals
from elt.harness.rule_log import logged

with logged(snakemake.log[0]):
    record = json.loads(Path(snakemake.input.efficiency[0]).read_text())
    audit = json.loads(Path(snakemake.input.audit).read_text())
    results = with_intervals(pd.read_csv(snakemake.input.table[0]), audit)
    write_calibration(
        latency_table(record),
        results,
        str(Path(snakemake.output.md).parent),
        sources={"efficiency": snakemake.input.efficiency[0], "results": snakemake.input.table[0]},
        primary=PRIMARY,
    )
