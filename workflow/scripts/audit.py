import pandas as pd

from elt.audit import audit, markdown
from elt.provenance import atomic_path, provenance, write_json
from elt.workflow import logged

with logged(snakemake.log[0]):
    result = audit(pd.read_csv(snakemake.input[0]), snakemake.params.settings)
    prov = provenance()
    write_json(snakemake.output.json, {**result, "provenance": prov})
    with atomic_path(snakemake.output.md) as tmp:
        tmp.write_text(markdown(result, prov))
