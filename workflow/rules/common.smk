# Paths and target lists shared by the rules.

wildcard_constraints:
    run=r"[A-Za-z0-9_.]+-[a-z]+-[A-Za-z0-9]+-\d+x\d+-s\d+",
    loops=r"\d+",


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
