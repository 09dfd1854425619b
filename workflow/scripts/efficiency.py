import torch

from elt.files import write_json
from elt.harness.efficiency import measure
from elt.harness.rule_log import logged

with logged(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    loops = {}
    for run, loop in snakemake.params.targets:
        loops.setdefault(run, []).append(int(loop))
    checkpoints = dict(zip(snakemake.params.runs, snakemake.input.checkpoints))
    write_json(
        snakemake.output[0],
        measure({run: checkpoints[run] for run in loops}, loops, snakemake.params.settings, snakemake.params.seed),
    )
