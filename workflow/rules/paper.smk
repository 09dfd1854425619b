# protocol: paper. The paper's metrics for every (run, loop count): training data pre-encoded once per
# codec, samples generated in shards, FID (ADM's and clean resize) against ADM's reference batch and the
# Inception Score for images (elt.eval.paper), FVD against the training split's clips for videos, and one
# table beside the paper's reported numbers. Settings: the profile's paper_protocol section.
from elt.config import VIDEO_DATASETS

PAPER = config["paper_protocol"]
SHARD_COUNT = -(-PAPER["num_samples"] // PAPER["shard_size"])


def shard_configs():
    """{shard folder name: a run config that trains on it} (every such run has the same data and codec)."""
    return {Path(cfg["codec"]["shards"]).name: cfg for cfg in RUNS.values() if cfg["codec"]["shards"]}


def paper_outputs():
    return [f"{RESULTS}/paper_metrics.csv"]


def sample_shards(wc):
    return [f"{WORK}/paper/samples/{wc.run}/L{wc.loops}/shard_{k:05d}.npz" for k in range(SHARD_COUNT)]


def fvd_reference_input(wc):
    """Videos: the I3D features of their dataset's training clips; images need none."""
    video = RUNS[wc.run]["data"]["dataset"] in VIDEO_DATASETS
    return [f"{WORK}/paper/reference/{SETTINGS[wc.run]['dataset']}_i3d.npz"] if video else []


rule encode:
    output:
        f"{WORK}/shards/{{shards}}/manifest.json",
    params:
        run_config=lambda wc: shard_configs()[wc.shards],
        shard_size=PAPER["shard_examples"],
        batch_size=PAPER["encode_batch_size"],
    threads: config["threads"]
    resources:
        gpu=min(1, config["resources"]["gpu"]),  # one process encodes: more GPUs would sit idle
        mem_mb=config["resources"]["mem_mb"],
        runtime=config["resources"]["runtime"],
    log:
        f"{WORK}/logs/encode/{{shards}}.log",
    script:
        "../scripts/encode.py"


rule sample_shard:
    input:
        rules.train.output.checkpoint,
    output:
        f"{WORK}/paper/samples/{{run}}/L{{loops}}/shard_{{shard}}.npz",
    wildcard_constraints:
        shard=r"\d{5}",
    params:
        num=PAPER["num_samples"],
        shards=SHARD_COUNT,
        seed=PAPER["sample_seed"],
    threads: config["threads"]
    resources:
        gpu=min(1, config["resources"]["gpu"]),
    log:
        f"{WORK}/logs/paper_sample/{{run}}_L{{loops}}_{{shard}}.log",
    script:
        "../scripts/sample_shard.py"


rule fvd_reference:
    output:
        f"{WORK}/paper/reference/{{dataset}}_i3d.npz",
    params:
        run_config=lambda wc: next(cfg for run, cfg in RUNS.items() if SETTINGS[run]["dataset"] == wc.dataset),
        clips=PAPER["fvd_reference_clips"],
    threads: config["threads"]
    resources:
        gpu=min(1, config["resources"]["gpu"]),
    log:
        f"{WORK}/logs/fvd_reference/{{dataset}}.log",
    script:
        "../scripts/fvd_reference.py"


rule paper_metrics:
    input:
        shards=sample_shards,
        fvd_reference=fvd_reference_input,
    output:
        f"{WORK}/paper/eval/{{run}}/L{{loops}}.json",
    params:
        settings=PAPER,
    threads: config["threads"]
    resources:
        gpu=min(1, config["resources"]["gpu"]),
    log:
        f"{WORK}/logs/paper_metrics/{{run}}_L{{loops}}.log",
    script:
        "../scripts/paper_metrics.py"


rule paper_table:
    input:
        records=[f"{WORK}/paper/eval/{run}/L{loops}.json" for run, loops in TARGETS],
        checkpoints=[f"{WORK}/runs/{run}/train.json" for run in RUNS],
    output:
        f"{RESULTS}/paper_metrics.csv",
    log:
        f"{WORK}/logs/paper_table.log",
    script:
        "../scripts/paper_table.py"
