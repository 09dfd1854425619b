from elt.files import atomic_path
from elt.harness.check import check_files
from elt.harness.rule_log import logged

# What `elt check` prints. The report always goes to the log (a failed job says which rows regressed);
# the output is written only when the check passes.
with logged(snakemake.log[0]):
    text, result = check_files(snakemake.input.reference, snakemake.input.metrics)
    print(text)
    if not result.passed:
        raise SystemExit(1)
    with atomic_path(snakemake.output[0]) as tmp:
        tmp.write_text(text + "\n")  # as `elt check` prints it
