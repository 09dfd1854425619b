"""Named model widths, as DiT names its sizes: configs say "S" or "XL", never raw numbers.

Depth is not part of a size: it is the run's N (unique layers) and L (loops). The paper-scale widths
follow docs/paper.md (inferred from parameter counts at 12 d^2 per layer); the tiny ones fit a 2-core CPU.
"""

from dataclasses import dataclass

from elt.errors import UserError


@dataclass(frozen=True)
class Width:
    dim: int
    heads: int
    mlp_ratio: int = 4


WIDTHS: dict[str, Width] = {
    "T": Width(dim=32, heads=2),  # tests
    "XS": Width(dim=64, heads=4),  # embedded suite (digits, moving digits)
    "S": Width(dim=128, heads=4),
    "M": Width(dim=256, heads=8),
    "B": Width(dim=768, heads=12),
    "L": Width(dim=1024, heads=16),
    "XL": Width(dim=1152, heads=16),
    "G": Width(dim=1536, heads=16),
    "H": Width(dim=1920, heads=16),  # the paper's diffusion rows: the one width within 5% of most of them (README)
}


def width(name: str) -> Width:
    if name not in WIDTHS:
        raise UserError(f"unknown width {name!r}: use one of {', '.join(WIDTHS)} (elt/models/sizes.py)")
    return WIDTHS[name]
