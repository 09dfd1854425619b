from elt.files import write_json
from elt.harness.rule_log import logged
from elt.sample import time_throughput

# ELT at its L_max and its unshared baseline (one depth), timed back to back on the whole machine.
with logged(snakemake.log[0]):
    s = snakemake.params.settings
    record = time_throughput(
        {"elt": (snakemake.input.elt, snakemake.params.loops), "unshared": (snakemake.input.unshared, 1)},
        s["batch_size"],
        s["repeats"],
        s["warmup"],
        snakemake.params.seed,
        snakemake.threads,
    )
    write_json(snakemake.output[0], record)
