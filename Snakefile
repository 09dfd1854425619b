# The ELT reproducibility pipeline: train the grid, sample every run at every loop count, measure
# quality and cost, and write the results table, plots, audit and regression check.
#   snakemake --cores 2                                  # profile "default"
#   snakemake --cores 2 --configfile config/smoke.yaml   # another profile
import os
from pathlib import Path

from snakemake.utils import min_version, validate

min_version("8.0")


configfile: "config/default.yaml"


validate(config, "workflow/schemas/config.schema.yaml")

# Every job computes with the profile's CPU kernels: set before this process imports elt (which pins them),
# and inherited by every job it starts (elt/cpu_kernels.py).
os.environ.update(ELT_CPU_KERNELS=config["cpu_kernels"])

from elt import cpu_kernels
from elt.errors import UserError
from elt.harness import grid

try:
    cpu_kernels.check()
    RUNS = grid.expand(config)
    SETTINGS = grid.pipeline_settings(config)
    PLANS = grid.loop_plans(config)
except UserError as err:
    raise ValueError(f"config error: {err}") from None
PROTOCOL = config.get("protocol", "embedded")  # embedded: this harness's small-scale metrics; paper: elt.eval.paper
TARGETS = grid.targets(config)
WORK, RESULTS = config["work"], config["results"]
if config["reference"] and not Path(config["reference"]).is_file():
    raise ValueError(
        f"config error: reference {config['reference']!r} does not exist: build it with 'elt reference' "
        "from a multi-seed run, or set reference: null to skip the regression check"
    )


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"


if PROTOCOL == "paper":

    include: "workflow/rules/paper.smk"

    rule all:
        input:
            paper_outputs(),
        default_target: True

else:

    include: "workflow/rules/evaluate.smk"
    include: "workflow/rules/loop_plans.smk"
    include: "workflow/rules/report.smk"

    rule all:
        input:
            final_outputs(),
        default_target: True
