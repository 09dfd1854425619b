# Results: table, headline metrics, plots, sample grids, audit and the regression check.


rule aggregate:
    input:
        evals=eval_files(),
        checkpoints=expand(f"{WORK}/runs/{{run}}/checkpoint.pt", run=RUNS),
    output:
        csv=f"{RESULTS}/metrics.csv",
        provenance=f"{RESULTS}/provenance.json",
    params:
        runs=list(RUNS),
    log:
        f"{WORK}/logs/aggregate.log",
    script:
        "../scripts/aggregate.py"


rule plots:
    input:
        metrics=rules.aggregate.output.csv,
        plans=rules.loop_plan_table.output[0],
        samples=[f"{WORK}/samples/{run}/L{loops}.npz" for run, loops in TARGETS],
    output:
        pareto_params=report(f"{RESULTS}/plots/pareto_params.png", category="Pareto"),
        pareto_gflops=report(f"{RESULTS}/plots/pareto_gflops.png", category="Pareto"),
        anytime=report(f"{RESULTS}/plots/anytime.png", category="Any-time"),
        tables=[f"{RESULTS}/plots/{name}.csv" for name in ("pareto_params", "pareto_gflops", "anytime")],
        # a grid per run: one column per loop count, one row per class
        sample_grids=report(expand(f"{RESULTS}/plots/samples/{{run}}.png", run=RUNS), category="Samples"),
        sample_tables=expand(f"{RESULTS}/plots/samples/{{run}}.csv", run=RUNS),
    params:
        metrics=config["audit"]["primary_metric"],
        targets=TARGETS,  # in the order of input.samples
    log:
        f"{WORK}/logs/plots.log",
    script:
        "../scripts/plots.py"


rule throughput:
    input:
        elt=lambda wc: f"{WORK}/runs/{timed_groups()[wc.group]['elt']}/checkpoint.pt",
        unshared=lambda wc: f"{WORK}/runs/{timed_groups()[wc.group]['unshared']}/checkpoint.pt",
    output:
        f"{WORK}/throughput/{{group}}.json",
    params:
        settings=config["audit"]["throughput"],
        loops=lambda wc: RUNS[timed_groups()[wc.group]["elt"]]["model"]["loops"],  # ELT at its L_max
        seed=config["metrics"]["sample_seed"],
    threads: machine_cores()  # the whole machine: no other job runs beside the timings
    log:
        f"{WORK}/logs/throughput/{{group}}.log",
    script:
        "../scripts/throughput.py"


rule audit:
    input:
        metrics=rules.aggregate.output.csv,
        features=feature_files(),
        plans=rules.loop_plan_table.output[0],
        plan_features=plan_files("features"),
        references=[f"{WORK}/features/{dataset}/reference_features.npz" for dataset in sorted({s["dataset"] for s in SETTINGS.values()})],
        timings=[f"{WORK}/throughput/{group}.json" for group in timed_groups()],
        reference=config["reference"] or [],  # the seed spread one-seed results borrow (training noise)
    output:
        md=report(f"{RESULTS}/audit.md", category="Audit"),
        json=f"{RESULTS}/audit.json",
        headline=f"{RESULTS}/metrics.json",  # the numbers `dvc metrics` compares across commits
    params:
        settings=config["audit"],
        targets=TARGETS,  # in the order of input.features
        plan_targets=[(run, plan) for run, plans in PLANS.items() for plan in plans],  # in the order of input.plan_features
        references={run: f"{WORK}/features/{settings['dataset']}/reference_features.npz" for run, settings in SETTINGS.items()},
        groups=list(timed_groups()),  # in the order of input.timings
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
