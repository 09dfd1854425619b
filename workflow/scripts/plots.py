from pathlib import Path

import pandas as pd

from elt.report import plot_anytime, plot_pareto
from elt.workflow import logged

with logged(snakemake.log[0]):
    df, plans, metrics, out = pd.read_csv(snakemake.input[0]), pd.read_csv(snakemake.input[1]), snakemake.params.metrics, snakemake.output
    plot_pareto(df, "unique_params", metrics, Path(out.pareto_params))
    plot_pareto(df, "gflops_per_sample", metrics, Path(out.pareto_gflops), plans)
    plot_anytime(df, metrics, Path(out.anytime))
