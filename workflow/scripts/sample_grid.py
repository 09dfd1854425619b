import re
from pathlib import Path

from elt.report import sample_grid
from elt.workflow import logged

with logged(snakemake.log[0]):
    files = {int(re.search(r"L(\d+)\.npz$", f).group(1)): f for f in snakemake.input}
    sample_grid(files, Path(snakemake.output.png))
