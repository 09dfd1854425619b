"""Pinned CPU kernels: the same bits whatever the environment or the CPU says (elt/cpu_kernels.py)."""

import json
import os
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from elt import cpu_kernels
from tests.conftest import SNAKEMAKE, copy_repo

# Kernel choices other than the pin, each of which computes other bits on this machine when not pinned
# (ATen's scalar `default` kernels, MKL's and oneDNN's most compatible paths).
FOREIGN_KERNELS = {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE", "ONEDNN_MAX_CPU_ISA": "SSE41"}


def python(code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, **env}, check=False
    )


GELU = (
    "import torch, elt; x = torch.linspace(-3, 3, 100001); "
    "print(elt.cpu_kernels.in_use(), torch.nn.functional.gelu(x).sum().item().hex())"
)


@pytest.mark.skipif(cpu_kernels.problem("avx2") is not None, reason="needs an x86-64 CPU with AVX2")
def test_import_elt_pins_avx2_whatever_the_environment_asks():
    """An environment that asks for AVX-512 (an illegal instruction on an AVX2 machine) or for the scalar
    kernels computes with AVX2 after `import elt`, and the same bits; native leaves the environment's choice."""
    pinned = python(GELU, ELT_CPU_KERNELS="avx2")
    assert pinned.returncode == 0 and pinned.stdout.startswith("avx2 "), pinned.stderr
    for capability in ("avx512", "default"):
        assert python(GELU, ATEN_CPU_CAPABILITY=capability).stdout == pinned.stdout
    native = python(GELU, ELT_CPU_KERNELS="native", ATEN_CPU_CAPABILITY="default")
    assert native.stdout.startswith("default ")


def test_a_level_the_machine_lacks_or_a_late_pin_is_a_one_line_error(monkeypatch):
    features = cpu_kernels._cpu_features()
    # the real CPU's missing level, found without the code under test: the elt command refuses it in one line
    lacking = next((name for name, flag in (("avx512", "AVX512F"), ("avx2", "AVX2")) if not features.get(flag)), None)
    if lacking:
        result = subprocess.run(
            [sys.executable, "-m", "elt.cli", "describe", "--config", "config/examples/elt_masked_digits.yaml"],
            capture_output=True,
            text=True,
            env={**os.environ, "ELT_CPU_KERNELS": lacking},
        )
        assert result.returncode == 2 and result.stderr.count("\n") == 1
        assert f"cpu_kernels {lacking} needs" in result.stderr and "cpu_kernels: native" in result.stderr
    # and on any machine: a CPU without AVX2 (an old x86 or an ARM one) cannot pin avx2
    monkeypatch.setattr(cpu_kernels, "_cpu_features", lambda: {**features, "AVX2": False})
    assert cpu_kernels.problem("avx2").startswith("cpu_kernels avx2 needs AVX2, which this")
    assert cpu_kernels.problem("native") is None
    monkeypatch.undo()
    assert "use one of avx2, avx512, native" in cpu_kernels.problem("sse")
    late = python("import torch; torch.ones(2) + 1; import elt; elt.cpu_kernels.check()", ATEN_CPU_CAPABILITY="default")
    if cpu_kernels.problem("avx2") is None:
        assert "a torch kernel ran before `import elt`" in late.stderr


@pytest.mark.pipeline
@pytest.mark.skipif(cpu_kernels.problem("avx2") is not None, reason="needs an x86-64 CPU with AVX2")
def test_the_pipeline_gives_the_same_numbers_whatever_kernels_the_environment_asks_for(smoke, tmp_path):
    """One group of the smoke profile run with an environment that asks every library for other kernels:
    the same results, to the bit, as the local smoke run; the provenance says what computed."""
    repo = copy_repo(tmp_path / "repo")
    cfg = yaml.safe_load((repo / "config/smoke.yaml").read_text())
    cfg.update(grid=[cfg["grid"][0]], reference=None, results="results/env", work="work/env")
    (repo / "config/env.yaml").write_text(yaml.safe_dump(cfg))
    result = subprocess.run(
        [SNAKEMAKE, "--cores", "2", "--configfile", "config/env.yaml"],
        cwd=repo,
        capture_output=True,
        text=True,
        env={**os.environ, **FOREIGN_KERNELS, "ELT_CPU_KERNELS": "native"},  # the profile's avx2 wins
    )
    assert result.returncode == 0, result.stderr[-3000:]
    measured = pd.read_csv(repo / "results/env/metrics.csv").drop(columns="samples_per_second")
    local = pd.read_csv(smoke / "results/smoke/metrics.csv").drop(columns="samples_per_second")
    local = local[local.run.isin(measured.run)].reset_index(drop=True)
    assert len(measured) == len(local) > 0
    pd.testing.assert_frame_equal(measured, local, check_exact=True, check_dtype=False)  # n_fid: empty in video rows
    provenance = json.loads((repo / "results/env/provenance.json").read_text())["cpu"]
    assert provenance["cpu_kernels"] == "avx2" and provenance["pinned"] == cpu_kernels.LEVELS["avx2"][1]
    for run in measured.run.unique():
        record = json.loads((repo / f"work/env/runs/{run}/train.json").read_text())["cpu"]
        assert record["capability"] == "avx2" and record["threads"] == cfg["threads"]
