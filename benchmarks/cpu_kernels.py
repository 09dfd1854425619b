"""The speed cost of pinned CPU kernels (elt/cpu_kernels.py): each level against `native`, on this machine.

Two workloads of the default profile, each in a fresh process (the kernels are chosen once per
process): 200 training steps of the masked ELT 2N x 3L run at one thread, and Inception features of
64 digit images (oneDNN convolutions, the FID path). Levels run interleaved, `repeats` times each;
the table gives the median seconds and the ratio to native. Writes results/bench/cpu_kernels.md.
    .venv/bin/python benchmarks/cpu_kernels.py [REPEATS]
"""

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from elt import cpu_kernels
from elt.provenance import git_commit

WORKLOAD = r"""
import json, sys, tempfile, time
import elt, numpy as np, torch
from elt import config
from elt.eval.metrics import inception_features
from elt.train import train

cfg = config.from_dict({
    "run": "bench", "seed": 0,
    "model": {"generator": "masked", "family": "elt", "width": "XS", "n_unique": 2, "loops": 3},
    "train": {"steps": 200, "batch_size": 64, "threads": 1, "checkpoint_every": 1000},
})
start = time.perf_counter()
with tempfile.TemporaryDirectory() as out:
    train(config.validate(cfg), out, progress=False)
trained = time.perf_counter() - start
torch.set_num_threads(1)
images = np.random.default_rng(0).integers(0, 256, (64, 3, 8, 8), dtype=np.uint8)
start = time.perf_counter()
inception_features(images)
print(json.dumps({"train": trained, "inception": time.perf_counter() - start, "kernels": elt.cpu_kernels.in_use()}))
"""


def run(level: str) -> dict:
    env = {**os.environ, cpu_kernels.VARIABLE: level}
    for name in cpu_kernels.PINNED_VARIABLES:  # native: each library's own choice, not a leftover pin
        env.pop(name, None)
    out = subprocess.run([sys.executable, "-c", WORKLOAD], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(repeats: int = 3) -> None:
    levels = [name for name in cpu_kernels.LEVELS if cpu_kernels.problem(name) is None]
    timings = {level: [] for level in levels}
    for _ in range(repeats):
        for level in levels:
            timings[level].append(run(level))
    median = {
        level: {part: float(np.median([t[part] for t in found])) for part in ("train", "inception")}
        for level, found in timings.items()
    }
    described = cpu_kernels.describe()
    lines = [
        "# Pinned CPU kernels: speed against native",
        "",
        f"{time.strftime('%Y-%m-%d')}, commit {git_commit()}, {described['cpu_model']} "
        f"(native torch kernels: {timings['native'][0]['kernels']}), {described['blas']}, oneDNN "
        f"{described['onednn']}; levels this CPU lacks are not run. Median of {repeats} interleaved repeats, "
        "each a fresh process: `benchmarks/cpu_kernels.py`.",
        "",
        "| cpu_kernels | torch kernels | 200 training steps, s | x native | Inception, 64 images, s | x native |",
        "|---|---|---|---|---|---|",
    ]
    for level in levels:
        m, n = median[level], median["native"]
        lines.append(
            f"| {level} | {timings[level][0]['kernels']} | {m['train']:.2f} | {m['train'] / n['train']:.3f} | "
            f"{m['inception']:.2f} | {m['inception'] / n['inception']:.3f} |"
        )
    out = Path("results/bench/cpu_kernels.md")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=out.parent, delete=False) as tmp:
        tmp.write("\n".join(lines) + "\n")
    os.replace(tmp.name, out)
    print(out.read_text())


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
