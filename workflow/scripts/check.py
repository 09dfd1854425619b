import sys

from elt.cli import main
from elt.provenance import atomic_path
from elt.workflow import logged

# The same command users run: `elt check`; its table goes to the output, and a regression fails the job.
with logged(snakemake.log[0]):
    with atomic_path(snakemake.output[0]) as tmp:
        with open(tmp, "w") as out:
            stdout, sys.stdout = sys.stdout, out
            try:
                main(["check", "--reference", snakemake.input.reference, snakemake.input.metrics])
            finally:
                sys.stdout = stdout
        print(tmp.read_text())
