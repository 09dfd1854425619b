# Paths and target lists shared by the rules.
from snakemake.exceptions import WorkflowError


wildcard_constraints:
    run=r"[A-Za-z0-9_.]+-[a-z]+-[A-Za-z0-9]+-\d+x\d+-s\d+",
    loops=r"\d+",
    plan=r"[A-Za-z0-9_.]+",
    dataset=r"[A-Za-z0-9_]+",
    group=r"[A-Za-z0-9_.]+-[A-Za-z0-9]+-\d+x\d+-s\d+",


def of_runs_dataset(pattern):
    """An input function: a per-dataset output pattern filled with the dataset of the job's run."""
    return lambda wc: pattern.format(dataset=SETTINGS[wc.run]["dataset"])


def codec_inputs(wc):
    """A masked run on VQ codes needs its dataset's tokenizer and pre-tokenized training split; a run on
    a streamed data set, the shards of its codec."""
    codec = RUNS[wc.run]["codec"]
    return [path for path in (codec["tokenizer"], codec["tokens"]) if path] + ([f"{codec['shards']}/manifest.json"] if codec["shards"] else [])


def eval_files():
    return [f"{WORK}/eval/{run}/L{loops}.json" for run, loops in TARGETS]


def plan_files(kind):
    """Every (ELT run, loop plan) of the profile's loop_plans: its evaluation record or saved features."""
    suffix = {"eval": ".json", "features": "_features.npz"}[kind]
    return [f"{WORK}/eval/{run}/P_{plan}{suffix}" for run, plans in PLANS.items() for plan in plans]


def machine_cores():
    """Every core of a local run (--cores): a job that times things has the machine to itself. Under a
    cluster executor no total exists; the job gets 1 thread unless its profile's set-threads says more."""
    try:
        return workflow.cores
    except WorkflowError:
        return 1


def feature_files():
    return [f"{WORK}/eval/{run}/L{loops}_features.npz" for run, loops in TARGETS]


def timed_groups():
    """{grid group: {elt: run, unshared: run}} for the groups whose throughput claim can be timed."""
    groups = {}
    for run, cfg in RUNS.items():
        groups.setdefault(grid.group_name(cfg), {})[cfg["model"]["family"]] = run
    return {group: runs for group, runs in groups.items() if {"elt", "unshared"} <= set(runs)}


def report_outputs():
    return [
        f"{RESULTS}/metrics.csv",
        f"{RESULTS}/metrics.json",
        f"{RESULTS}/audit.md",
        f"{RESULTS}/audit.json",
        f"{RESULTS}/loop_plans.csv",
        f"{RESULTS}/plots/pareto_params.png",
        f"{RESULTS}/plots/pareto_gflops.png",
        f"{RESULTS}/plots/anytime.png",
    ] + [f"{RESULTS}/plots/samples/{run}.png" for run in RUNS]


def final_outputs():
    check = [f"{RESULTS}/check.txt"] if config["reference"] else []
    return report_outputs() + check
