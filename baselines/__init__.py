"""Baselines at matched inference compute, built by the same generator code as ELT (one objective,
two networks): only the layout of the transformer differs.

- unshared: N*L unique layers applied once; same width, same effective depth as ELT N x L.
- shallow:  N unique layers applied once; the same parameters as ELT N x L, 1/L of its compute.
"""


def unshared(n_unique: int, loops: int) -> tuple[int, int]:
    return n_unique * loops, 1


def shallow(n_unique: int, loops: int) -> tuple[int, int]:
    return n_unique, 1


LAYOUTS = {"unshared": unshared, "shallow": shallow}
