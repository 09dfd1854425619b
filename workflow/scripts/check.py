import contextlib
import io

from elt.cli import main
from elt.files import atomic_path
from elt.harness.rule_log import logged

# The same command users run: `elt check`. Its table always goes to the log (a failed job says
# which rows regressed); the output is written only when the check passes.
with logged(snakemake.log[0]):
    table = io.StringIO()
    try:
        with contextlib.redirect_stdout(table):
            main(["check", "--reference", snakemake.input.reference, snakemake.input.metrics])
    finally:
        print(table.getvalue())
    with atomic_path(snakemake.output[0]) as tmp:
        tmp.write_text(table.getvalue())
