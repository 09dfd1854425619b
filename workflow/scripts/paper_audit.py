import json
from pathlib import Path

import pandas as pd

from elt.eval.paper import PaperFeatures
from elt.files import atomic_path, write_json
from elt.harness.paper_audit import paper_audit, paper_markdown
from elt.harness.rule_log import logged
from elt.provenance import provenance

with logged(snakemake.log[0]):
    table_path = snakemake.input.table
    table = pd.read_csv(table_path)
    efficiency = json.loads(Path(snakemake.input.efficiency[0]).read_text()) if snakemake.input.efficiency else None
    result = paper_audit(table, snakemake.params.settings, PaperFeatures.of_table(table, table_path), efficiency)
    prov = provenance()
    write_json(snakemake.output.json, {**result, "provenance": prov})
    with atomic_path(snakemake.output.md) as tmp:
        tmp.write_text(paper_markdown(result, prov))
