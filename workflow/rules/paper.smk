# protocol: paper. The paper's metrics for every (run, loop count): training data pre-encoded once per
# codec, a guidance sweep per run where the profile asks for one (elt.eval.guidance_sweep), samples
# generated in shards, FID (ADM's and clean resize) against ADM's reference batch and the Inception Score
# for images (elt.eval.paper), FVD under the profile's FVD protocol for videos with the tokenizer's
# reconstruction FVD beside it (elt.eval.fvd), and one table beside the paper's reported numbers; then the
# audit of the paper's claims from the saved features (elt.harness.paper_audit), the efficiency claims timed
# on the profile's device and the calibration joined from them (elt.harness.efficiency), and the regression
# check against a paper-protocol reference. Settings: the profile's paper_protocol section.
from elt.config import VIDEO_DATASETS
from elt.eval.guidance_sweep import SEED_OFFSET, paper_settings, scale_name

try:
    PAPER = paper_settings(config["paper_protocol"])
except UserError as err:
    raise ValueError(f"config error: {err}") from None
SHARD_COUNT = -(-PAPER["num_samples"] // PAPER["shard_size"])
SWEEP = PAPER["guidance_sweep"]
if SWEEP and any(cfg["data"]["dataset"] in VIDEO_DATASETS for cfg in RUNS.values()):
    raise ValueError(
        "config error: paper_protocol.guidance_sweep picks scales by image FID, and this profile has video runs: "
        "set guidance_sweep null (the paper samples its videos without guidance)"
    )
SWEEP_SHARDS = -(-SWEEP["samples"] // PAPER["shard_size"]) if SWEEP else 0


def shard_configs():
    """{shard folder name: a run config that trains on it} (every such run has the same data and codec)."""
    return {Path(cfg["codec"]["shards"]).name: cfg for cfg in RUNS.values() if cfg["codec"]["shards"]}


EFFICIENCY = PAPER["efficiency"]


def paper_outputs():
    return (
        [f"{RESULTS}/paper_metrics.csv", f"{RESULTS}/audit.md"]
        + ([f"{RESULTS}/guidance_sweep.csv"] if SWEEP else [])
        + ([f"{RESULTS}/calibration/calibration.md"] if EFFICIENCY else [])
        + ([f"{RESULTS}/check.txt"] if config["reference"] else [])
    )


def guidance_pick(wc):
    """The run's sweep result, when the profile sweeps: its samples are drawn at the picked scale."""
    return [f"{WORK}/paper/sweep/{wc.run}/pick.json"] if SWEEP else []


def dataset_tokenizer(dataset):
    """A run config of the dataset, one on its VQ tokens when there is one: the FVD reference then also
    measures the tokenizer's reconstruction FVD on the same real clips."""
    runs = [cfg for run, cfg in RUNS.items() if SETTINGS[run]["dataset"] == dataset]
    return next((cfg for cfg in runs if cfg["codec"]["tokenizer"]), runs[0])


def paired_labels(wc):
    """Video runs under an FVD protocol that pairs labels sample with the real clips' labels."""
    video = RUNS[wc.run]["data"]["dataset"] in VIDEO_DATASETS
    return fvd_reference_input(wc) if video and PAPER["fvd"]["labels"] == "paired" else []


def sweep_shards(wc):
    return [f"{WORK}/paper/sweep/{wc.run}/g{wc.guidance}/shard_{k:05d}.npz" for k in range(SWEEP_SHARDS)]


def sample_shards(wc):
    return [f"{WORK}/paper/samples/{wc.run}/L{wc.loops}/shard_{k:05d}.npz" for k in range(SHARD_COUNT)]


def fvd_reference_input(wc):
    """Videos: the I3D features of their dataset's training clips; images need none."""
    video = RUNS[wc.run]["data"]["dataset"] in VIDEO_DATASETS
    return [f"{WORK}/paper/reference/{SETTINGS[wc.run]['dataset']}_i3d.npz"] if video else []


rule encode:
    input:
        tokenizer=lambda wc: [t for t in [shard_configs()[wc.shards]["codec"]["tokenizer"]] if t],
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
        checkpoint=rules.train.output.checkpoint,
        pick=guidance_pick,
        paired=paired_labels,
    output:
        f"{WORK}/paper/samples/{{run}}/L{{loops}}/shard_{{shard}}.npz",
    wildcard_constraints:
        shard=r"\d{5}",
    params:
        num=PAPER["num_samples"],
        shards=SHARD_COUNT,
        seed=PAPER["sample_seed"],
        labels=PAPER["sample_labels"],
        guidance=None,
        steps=lambda wc: grid.sampling_steps(SETTINGS[wc.run], int(wc.loops)),
    threads: config["threads"]
    resources:
        gpu=min(1, config["resources"]["gpu"]),
    log:
        f"{WORK}/logs/paper_sample/{{run}}_L{{loops}}_{{shard}}.log",
    script:
        "../scripts/sample_shard.py"


rule sweep_shard:
    input:
        checkpoint=rules.train.output.checkpoint,
    output:
        f"{WORK}/paper/sweep/{{run}}/g{{guidance}}/shard_{{shard}}.npz",
    wildcard_constraints:
        shard=r"\d{5}",
        guidance=r"[0-9.e+-]+",
    params:
        num=SWEEP["samples"] if SWEEP else 0,
        shards=SWEEP_SHARDS,
        seed=PAPER["sample_seed"] + SEED_OFFSET,
        labels=PAPER["sample_labels"],
        guidance=lambda wc: float(wc.guidance),
        loops=lambda wc: grid.trained_loops(RUNS[wc.run]),
        steps=lambda wc: grid.sampling_steps(SETTINGS[wc.run], grid.trained_loops(RUNS[wc.run])),
    threads: config["threads"]
    resources:
        gpu=min(1, config["resources"]["gpu"]),
    log:
        f"{WORK}/logs/sweep_sample/{{run}}_g{{guidance}}_{{shard}}.log",
    script:
        "../scripts/sample_shard.py"


rule sweep_metrics:
    input:
        shards=sweep_shards,
    output:
        f"{WORK}/paper/sweep/{{run}}/g{{guidance}}.json",
    params:
        settings=PAPER,
        sweep=True,
    threads: config["threads"]
    resources:
        gpu=min(1, config["resources"]["gpu"]),
    log:
        f"{WORK}/logs/sweep_metrics/{{run}}_g{{guidance}}.log",
    script:
        "../scripts/paper_metrics.py"


rule guidance_pick:
    input:
        records=lambda wc: [f"{WORK}/paper/sweep/{wc.run}/g{scale_name(g)}.json" for g in SWEEP["scales"]],
    output:
        f"{WORK}/paper/sweep/{{run}}/pick.json",
    params:
        loops=lambda wc: grid.trained_loops(RUNS[wc.run]),
        seed=PAPER["sample_seed"] + SEED_OFFSET,
    log:
        f"{WORK}/logs/guidance_pick/{{run}}.log",
    script:
        "../scripts/guidance_pick.py"


rule guidance_sweep_table:
    input:
        picks=[f"{WORK}/paper/sweep/{run}/pick.json" for run in RUNS],
    output:
        f"{RESULTS}/guidance_sweep.csv",
    log:
        f"{WORK}/logs/guidance_sweep_table.log",
    script:
        "../scripts/guidance_sweep_table.py"


rule fvd_reference:
    input:
        tokenizer=lambda wc: [t for t in [dataset_tokenizer(wc.dataset)["codec"]["tokenizer"]] if t],
    output:
        f"{WORK}/paper/reference/{{dataset}}_i3d.npz",
    params:
        run_config=lambda wc: dataset_tokenizer(wc.dataset),
        fvd=PAPER["fvd"],
        seed=PAPER["sample_seed"],
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
        record=f"{WORK}/paper/eval/{{run}}/L{{loops}}.json",
        features=f"{WORK}/paper/eval/{{run}}/L{{loops}}_features.npz",  # what the audit and a reference resample
    params:
        settings=PAPER,
        sweep=False,
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
        picks=[f"{WORK}/paper/sweep/{run}/pick.json" for run in RUNS] if SWEEP else [],
    output:
        f"{RESULTS}/paper_metrics.csv",
    params:
        settings=PAPER,
    log:
        f"{WORK}/logs/paper_table.log",
    script:
        "../scripts/paper_table.py"


rule efficiency:
    input:
        checkpoints=[f"{WORK}/runs/{run}/checkpoint.pt" for run in RUNS],
        records=rules.paper_table.output,  # after every sampling job: nothing else runs beside the timings
    output:
        f"{RESULTS}/efficiency.json",
    params:
        settings=EFFICIENCY,
        runs=list(RUNS),  # in the order of input.checkpoints
        targets=TARGETS,
        seed=PAPER["sample_seed"],
    threads: machine_cores()  # the whole machine: no other job runs beside the timings
    resources:
        gpu=min(1, config["resources"]["gpu"]),
    log:
        f"{WORK}/logs/efficiency.log",
    script:
        "../scripts/efficiency.py"


rule paper_audit:
    input:
        table=rules.paper_table.output[0],
        features=[f"{WORK}/paper/eval/{run}/L{loops}_features.npz" for run, loops in TARGETS],
        efficiency=rules.efficiency.output if EFFICIENCY else [],
    output:
        md=f"{RESULTS}/audit.md",
        json=f"{RESULTS}/audit.json",
    params:
        settings={**config["audit"], **PAPER["audit"]},
    threads: config["threads"]
    log:
        f"{WORK}/logs/paper_audit.log",
    script:
        "../scripts/paper_audit.py"


rule calibration:
    input:
        efficiency=rules.efficiency.output[0],
        table=rules.paper_table.output[0],
        audit=rules.paper_audit.output.json,  # each (run, L)'s quality interval
    output:
        md=f"{RESULTS}/calibration/calibration.md",
        table=f"{RESULTS}/calibration/calibration.csv",
        plot=f"{RESULTS}/calibration/calibration.png",
        latency=f"{RESULTS}/calibration/latency.csv",
    log:
        f"{WORK}/logs/calibration.log",
    script:
        "../scripts/calibration.py"


rule check:
    input:
        metrics=rules.paper_table.output[0],
        reference=config["reference"] or [],
    output:
        f"{RESULTS}/check.txt",
    log:
        f"{WORK}/logs/check.log",
    script:
        "../scripts/check.py"
