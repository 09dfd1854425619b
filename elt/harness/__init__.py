"""The pipeline around the library: the experiment grid, results table and plots, audit, regression check,
Snakemake rule logs and job seconds, the benchmark."""
