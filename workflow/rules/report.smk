# Results: table, headline metrics, plots, sample grids, audit and the regression check.


rule aggregate:
    input:
        evals=eval_files(),
        checkpoints=expand(f"{WORK}/runs/{{run}}/checkpoint.pt", run=RUNS),
    output:
        csv=f"{RESULTS}/metrics.csv",
        json=f"{RESULTS}/metrics.json",
        provenance=f"{RESULTS}/provenance.json",
    params:
        runs=list(RUNS),
    log:
        f"{WORK}/logs/aggregate.log",
    script:
        "../scripts/aggregate.py"


rule plots:
    input:
        rules.aggregate.output.csv,
    output:
        pareto_params=report(f"{RESULTS}/plots/pareto_params.png", category="Pareto"),
        pareto_gflops=report(f"{RESULTS}/plots/pareto_gflops.png", category="Pareto"),
        anytime=report(f"{RESULTS}/plots/anytime.png", category="Any-time"),
        tables=[f"{RESULTS}/plots/{name}.csv" for name in ("pareto_params", "pareto_gflops", "anytime")],
    params:
        metrics=config["audit"]["primary_metric"],
    log:
        f"{WORK}/logs/plots.log",
    script:
        "../scripts/plots.py"


rule sample_grid:
    input:
        lambda wc: [f"{WORK}/samples/{wc.run}/L{loops}.npz" for run, loops in TARGETS if run == wc.run],
    output:
        png=report(f"{RESULTS}/plots/samples/{{run}}.png", category="Samples"),
        table=f"{RESULTS}/plots/samples/{{run}}.csv",
    log:
        f"{WORK}/logs/sample_grid/{{run}}.log",
    script:
        "../scripts/sample_grid.py"


rule audit:
    input:
        rules.aggregate.output.csv,
    output:
        md=report(f"{RESULTS}/audit.md", category="Audit"),
        json=f"{RESULTS}/audit.json",
    params:
        settings=config["audit"],
    log:
        f"{WORK}/logs/audit.log",
    script:
        "../scripts/audit.py"


rule check:
    input:
        metrics=rules.aggregate.output.csv,
        reference=config["reference"] or [],
        audit=rules.audit.output.json,
    output:
        f"{RESULTS}/check.txt",
    log:
        f"{WORK}/logs/check.log",
    script:
        "../scripts/check.py"
