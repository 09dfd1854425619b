# Paths and target lists shared by the rules.

wildcard_constraints:
    run=r"[A-Za-z0-9_.]+-[a-z]+-[A-Za-z0-9]+-\d+x\d+-s\d+",
    loops=r"\d+",
    dataset=r"[A-Za-z0-9_]+",


def of_runs_dataset(pattern):
    """An input function: a per-dataset output pattern filled with the dataset of the job's run."""
    return lambda wc: pattern.format(dataset=SETTINGS[wc.run]["dataset"])


def codec_inputs(wc):
    """A masked run on VQ codes needs its dataset's tokenizer and pre-tokenized training split."""
    codec = RUNS[wc.run]["codec"]
    return [path for path in (codec["tokenizer"], codec["tokens"]) if path]


def eval_files():
    return [f"{WORK}/eval/{run}/L{loops}.json" for run, loops in TARGETS]


def report_outputs():
    return [
        f"{RESULTS}/metrics.csv",
        f"{RESULTS}/metrics.json",
        f"{RESULTS}/audit.md",
        f"{RESULTS}/audit.json",
        f"{RESULTS}/plots/pareto_params.png",
        f"{RESULTS}/plots/pareto_gflops.png",
        f"{RESULTS}/plots/anytime.png",
    ] + [f"{RESULTS}/plots/samples/{run}.png" for run in RUNS]


def final_outputs():
    check = [f"{RESULTS}/check.txt"] if config["reference"] else []
    return report_outputs() + check
