"""`elt describe` of a pipeline profile: every run of its grid with its layout, unique parameters and GFLOPs
per sample, beside the paper's parameter counts where the profile gives them."""

from __future__ import annotations

from pathlib import Path

import torch

from elt.codecs.tokenizer import TokenizerConfig, VQCodec, VQTokenizer
from elt.config import from_dict, parse_section
from elt.data.datasets import data_shape
from elt.eval.accounting import measured_flops
from elt.harness.grid import expand, paper_rows
from elt.models.looped import build, count_params
from elt.runs import assemble


def describe_profile(profile: dict) -> list[dict]:
    """Every run of a pipeline profile's grid: layout, unique parameters, GFLOPs per sample at its
    trained L, and the paper's reported parameter count where the profile gives one. Networks are built
    on the meta device, so paper-scale grids take seconds and no memory, and no data or weights are read."""
    rows, paper = [], paper_rows(profile)
    for run, run_cfg in expand(profile).items():
        parts, net = meta_network(run_cfg, profile)
        params = count_params(net)["unique_params"]
        reported = (paper.get(run) or {}).get("params")
        rows.append(
            {
                "run": run,
                "family": parts.cfg.model.family,
                "generator": parts.cfg.model.generator,
                "width": parts.cfg.model.width,
                "dim": net.cfg.dim,
                "layout": f"{net.cfg.n_unique}N x {net.cfg.loops}L",
                "unique_params": params,
                "gflops_per_sample": gflops_per_sample(
                    net, net.cfg.loops, parts.cfg.sampling_steps, parts.cfg.guidance
                ),
                "paper_params": reported,
                "params_vs_paper": (params / reported - 1) if reported else None,
            }
        )
    return rows


def meta_network(run_cfg: dict, profile: dict):
    """(Parts, network on the meta device) of a run of the profile: its shapes, without weights or data."""
    cfg = from_dict(run_cfg)
    parts = assemble(cfg, codec=untrained_tokenizer(cfg, profile))
    with torch.device("meta"):
        return parts, build(parts.net_cfg)


def gflops_per_sample(net, loops: int, sampling_steps: int, guidance: float) -> float:
    """One sample's GFLOPs: a forward at `loops` per sampling step, twice under classifier-free guidance."""
    return measured_flops(net, loops) * sampling_steps * (2 if guidance != 1.0 else 1) / 1e9


def untrained_tokenizer(cfg, profile: dict):
    """For a run on VQ codes whose tokenizer the pipeline has not trained yet: a codec of the geometry
    the profile's tokenizer settings will give (tokens per clip, codebook), built on the meta device."""
    if not cfg.codec.tokenizer or Path(cfg.codec.tokenizer).is_file():
        return None
    dataset = next(name for name, d in profile["datasets"].items() if d.get("dataset") == cfg.data.dataset)
    shape = data_shape(cfg)
    settings = parse_section(
        TokenizerConfig, {**profile["tokenizers"][dataset], "in_channels": shape[1]}, "tokenizers."
    )
    with torch.device("meta"):
        return VQCodec(VQTokenizer(settings), shape)


def profile_markdown(path: str, rows: list[dict]) -> str:
    """Markdown: one line per run, with the paper's parameter count beside the harness's where known."""
    lines = [
        f"{path}: {len(rows)} runs",
        "",
        "| run | family | N x L | width | unique params | GFLOPs/sample | paper params | vs paper |",
        "|---|---|---|---|---|---|---|---|",
    ]

    def count(n: float) -> str:
        return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.1f}k"

    for r in rows:
        paper = count(r["paper_params"]) if r["paper_params"] else "-"
        versus = f"{r['params_vs_paper']:+.1%}" if r["params_vs_paper"] is not None else "-"
        lines.append(
            f"| {r['run']} | {r['family']} | {r['layout']} | {r['width']} (d={r['dim']}) | {count(r['unique_params'])} "
            f"| {r['gflops_per_sample']:,.{1 if r['gflops_per_sample'] >= 10 else 3}f} | {paper} | {versus} |"
        )
    return "\n".join(lines)
