"""ELT: Elastic Looped Transformers for visual generation, and the harness that audits them."""

from elt import cpu_kernels

__version__ = "0.1.0"

cpu_kernels.pin()  # before any torch kernel runs: the same bits on every machine (elt/cpu_kernels.py)
