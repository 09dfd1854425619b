"""Which CPU kernels compute: the choice that decides the last bits of every number on a CPU.

torch picks its vectorised kernels (ATen), MKL its matrix-multiply code path and oneDNN its
convolution code by the CPU they find: the same code gives different last bits on an AVX-512 and an
AVX2 machine, and training amplifies them into different models. Pinning all three to one level
makes the embedded profiles bit-identical on every machine that has that level; `avx2` (the default)
is on every x86-64 CPU since 2013-2015. `native` leaves the choice to each library: faster on AVX-512
machines, and results then agree between machines only statistically.

The pin must come before the first kernel runs (torch reads ATEN_CPU_CAPABILITY at its first
dispatch, MKL and oneDNN read theirs when first called), so `import elt` pins: ELT_CPU_KERNELS names
the level (default avx2). The pipeline passes its profile's `cpu_kernels` to every job through that
variable. Threads per job are the other half of the bits (a parallel reduction splits by thread
count): the jobs set theirs from the profile's `threads`.
"""

from __future__ import annotations

import contextlib
import functools
import os
import platform
import re

from elt.errors import UserError

VARIABLE = "ELT_CPU_KERNELS"
DEFAULT = "avx2"
# level -> (numpy's names of the CPU features it needs, the environment that pins each library to it)
LEVELS = {
    "avx2": (("AVX2", "FMA3"), {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"}),
    "avx512": (
        ("AVX512F", "AVX512BW", "AVX512VL", "AVX512DQ", "FMA3"),
        {"ATEN_CPU_CAPABILITY": "avx512", "MKL_CBWR": "AVX512", "ONEDNN_MAX_CPU_ISA": "AVX512_CORE"},
    ),
    "native": ((), {}),
}
PINNED_VARIABLES = ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "ONEDNN_MAX_CPU_ISA")
FIX = f"set cpu_kernels: native in the profile (or {VARIABLE}=native for the elt command)"


def level() -> str:
    return os.environ.get(VARIABLE, DEFAULT)


def _cpu_features() -> dict[str, bool]:
    """The CPU's instruction-set features as numpy's runtime dispatch found them (any OS)."""
    try:
        from numpy._core._multiarray_umath import __cpu_features__
    except ImportError:  # numpy 1.x
        from numpy.core._multiarray_umath import __cpu_features__
    return __cpu_features__


def problem(name: str | None = None) -> str | None:
    """Why the level cannot be pinned on this machine (None when it can)."""
    name = name or level()
    if name not in LEVELS:
        return f"cpu_kernels is {name!r}: use one of {', '.join(LEVELS)}"
    needs, _ = LEVELS[name]
    missing = [f for f in needs if not _cpu_features().get(f)]
    if missing:
        return f"cpu_kernels {name} needs {', '.join(missing)}, which this {platform.machine()} CPU lacks: {FIX}"
    return None


def pin() -> None:
    """Set the pinning environment of the level (ELT_CPU_KERNELS) for this process and its children. A level
    the machine lacks is left unset here (forcing it would crash on an illegal instruction); check() says why."""
    if problem() is None:
        os.environ.update(LEVELS[level()][1])


def check() -> None:
    """One-line errors: a level this machine lacks, or torch's kernels chosen before the pin took effect."""
    if reason := problem():
        raise UserError(reason)
    wanted = LEVELS[level()][1].get("ATEN_CPU_CAPABILITY")
    if wanted and in_use() != wanted:
        raise UserError(
            f"torch computes with {in_use()} kernels although cpu_kernels is {level()}: a torch kernel ran before "
            "`import elt`; import elt first"
        )


def in_use() -> str:
    import torch

    return torch.backends.cpu.get_cpu_capability().lower()


@functools.cache
def _machine() -> dict:
    """What does not change within a process: the CPU model and torch's BLAS and oneDNN builds."""
    import torch

    model = None
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        model = re.search(r"^model name\s*:\s*(.+)$", f.read(), re.M)
    config = torch.__config__.show()
    mkl = re.search(r"Math Kernel Library Version (\S+)", config)
    onednn = re.search(r"MKL-DNN v(\S+)", config)
    return {
        "cpu_model": model.group(1).strip() if model else (platform.processor() or platform.machine()),
        "blas": f"MKL {mkl.group(1)}" if mkl else ("MKL" if torch.backends.mkl.is_available() else "other"),
        "onednn": onednn.group(1) if onednn else None,
    }


def describe() -> dict:
    """What decides the bits of a number computed on this CPU, for a result's provenance."""
    import torch

    machine = _machine()
    return {
        "cpu_model": machine["cpu_model"],
        "cpu_kernels": level(),
        "capability": in_use(),
        "pinned": {name: os.environ.get(name) for name in PINNED_VARIABLES},
        "blas": machine["blas"],
        "onednn": machine["onednn"],
        "threads": torch.get_num_threads(),
    }
