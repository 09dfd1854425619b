from pathlib import Path

import pandas as pd

from elt.harness.report import plot_anytime, plot_pareto, sample_grid
from elt.harness.rule_log import logged

with logged(snakemake.log[0]):
    df, plans, metrics, out = (
        pd.read_csv(snakemake.input.metrics),
        pd.read_csv(snakemake.input.plans),
        snakemake.params.metrics,
        snakemake.output,
    )
    plot_pareto(df, "unique_params", metrics, Path(out.pareto_params))
    plot_pareto(df, "gflops_per_sample", metrics, Path(out.pareto_gflops), plans)
    plot_anytime(df, metrics, Path(out.anytime))
    by_run = {}
    for (run, loops), path in zip(snakemake.params.targets, snakemake.input.samples):
        by_run.setdefault(run, {})[int(loops)] = path
    for png in out.sample_grids:
        sample_grid(by_run[Path(png).stem], Path(png))
