#!/usr/bin/env bash
# The prepared GPU check (about 8 minutes on one GPU): what a CUDA machine must show before the
# harness's GPU path is called measured. Run from the repository root; figures go to $OUT
# (default results/bench). It needs torch with CUDA, numpy, scikit-learn, einops, tqdm and pyyaml;
# the smoke profile step runs only where snakemake and the metric packages are installed.
#   1. the runtime on CUDA: a tiny run trained and sampled with device cuda, fp32 and bf16, and the
#      fp32 CUDA samples compared with CPU ones drawn from the same checkpoint and seed;
#   2. elt bench at the paper's widths (ELT-L 8N x 3L, ELT-XL 7N x 4L and their unshared baselines),
#      bf16, eager and compiled: train-step MFU against the same run's matmul peak, peak memory,
#      sampling forward latency per loop count at batch 1, 8, 64, 256;
#   3. the smoke profile end to end with runtime.device cuda, when snakemake is importable.
set -euo pipefail
OUT=${OUT:-results/bench}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
$PY - <<'PY' > "$OUT/environment.txt"
import torch; print(torch.__version__, torch.cuda.get_device_name(0), torch.cuda.is_available())
PY

work=$(mktemp -d)
cat > "$work/tiny.yaml" <<'YAML'
run: gpu-check-masked
model: {generator: masked, width: XS, n_unique: 2, loops: 3}
train: {steps: 200, batch_size: 64, lr: 0.002, warmup_steps: 20, checkpoint_every: 100}
masked: {sampling_steps: 8}
YAML
for precision in fp32 bf16; do
  timeout 120 $PY -m elt.cli train --config "$work/tiny.yaml" --out "$work/$precision" --device cuda --precision $precision --quiet \
    > "$OUT/train-$precision.json"
  cp "$work/$precision/train.json" "$OUT/train-record-$precision.json"
done
timeout 60 $PY -m elt.cli sample --checkpoint "$work/fp32/checkpoint.pt" --loops 1-3 --num 200 --device cuda --out "$work/cuda_L{loops}.npz"
timeout 60 $PY -m elt.cli sample --checkpoint "$work/fp32/checkpoint.pt" --loops 1-3 --num 200 --device cpu --out "$work/cpu_L{loops}.npz"
$PY - "$work" > "$OUT/cuda_vs_cpu_samples.json" <<'PY'
import json, sys, numpy as np
work = sys.argv[1]
out = {}
for l in (1, 2, 3):
    c, g = (np.load(f"{work}/{d}_L{l}.npz") for d in ("cpu", "cuda"))
    meta = json.loads(str(g["meta"]))
    out[f"L{l}"] = {"identical_pixels": float((c["samples"] == g["samples"]).mean()),
                    "cuda_samples_per_second": meta["samples_per_second"], "device": meta["device"]}
print(json.dumps(out, indent=2))
PY

timeout 240 $PY -m elt.cli bench --scale paper --precision bf16 --repeats 7 --out "$OUT/bench-paper-bf16.json"
timeout 150 $PY -m elt.cli bench --scale paper --precision bf16 --repeats 5 --compile --out "$OUT/bench-paper-bf16-compiled.json" \
  || echo "compiled bench did not finish in its 150 s" > "$OUT/bench-paper-bf16-compiled.txt"

if $PY -c "import snakemake, cleanfid" 2>/dev/null; then
  printf 'runtime: {device: cuda}\n' > "$work/cuda.yaml"
  timeout 240 snakemake --cores 16 --configfile config/smoke.yaml "$work/cuda.yaml" \
    --config results="$OUT/smoke" work="$work/smoke" reference=null > "$OUT/smoke.log" 2>&1 || echo "smoke failed: see smoke.log" >> "$OUT/smoke.log"
else
  echo "snakemake or clean-fid is not installed here: the smoke profile was not run" > "$OUT/smoke.log"
fi
echo "done: $OUT"
