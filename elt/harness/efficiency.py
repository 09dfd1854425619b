"""The paper's efficiency claims, measured on the device a profile runs on, as steps of its pipeline.

`measure` times every evaluated (run, L) of the profile sampling one batch, at each batch size (the full
sampler: every step, guidance and decoding, as the throughput the paper reports), in interleaved rotating
repeats after warm-up (elt.harness.bench.interleaved: CUDA events on a GPU), so repeat r of ELT and of
its unshared baseline form a pair; one optimisation step of every run on a batch of its own codec's
encoding (ILSD for ELT, as elt.train runs it), timed the same way; and peak device memory of each, one
model at a time. `claims` judges them per comparison: sampling throughput of ELT at L_max against the
unshared model at each batch size, training step time, and peak memory in training and sampling, each on
its interval (timings: the median of per-repeat ratios with its order-statistic interval). The same
timings give the calibration's latency table (elt.harness.calibrate.latency_table).
"""

from __future__ import annotations

import functools
from types import SimpleNamespace

import numpy as np
import pandas as pd
import torch

from elt.errors import UserError
from elt.harness.audit import FAILS, HOLDS, NOT_MEASURED, Statistic, _claim, _judged, comparison_name, paired_speed
from elt.harness.bench import interleaved, peak_memory_gib, train_step, weight_bytes
from elt.provenance import provenance
from elt.runs import load_checkpoint
from elt.runtime import Runtime
from elt.sample import balanced_labels, generate

SETTINGS = {"batch_sizes": [1, 8, 64, 256], "repeats": 15, "warmup": 2, "train_batch": 32}
# The paper (docs/paper.md): up to 3.5x sampling throughput on TPU v6e at batch 8, no gain at its smallest scale.
PAPER_THROUGHPUT = "up to 3.5x on TPU v6e (batch 8); no gain at the paper's smallest scale"


def efficiency_settings(section) -> dict | None:
    """paper_protocol.efficiency checked, defaults filled in; null: the efficiency steps do not run."""
    if section is None:
        return None
    example = "e.g. efficiency: {batch_sizes: [1, 8, 64, 256], repeats: 15, warmup: 2, train_batch: 32}"
    if not isinstance(section, dict) or set(section) - set(SETTINGS):
        raise UserError(f"paper_protocol.efficiency takes {', '.join(SETTINGS)}: {example}")
    settings = {**SETTINGS, **section}
    sizes = settings["batch_sizes"]
    if (
        not isinstance(sizes, list)
        or not sizes
        or any(isinstance(b, bool) or not isinstance(b, int) or b < 1 for b in sizes)
    ):
        raise UserError(f"paper_protocol.efficiency.batch_sizes must be a list of positive integers: {example}")
    for key, least in (("repeats", 3), ("warmup", 0), ("train_batch", 1)):
        value = settings[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise UserError(f"paper_protocol.efficiency.{key} must be an integer >= {least}, got {value!r}: {example}")
    return settings


def _training_batch(parts, ckpt: dict, batch: int, seed: int):
    """A batch as the run's training sees it: random uint8 data of its shape encoded by its own codec, and labels."""
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, (batch, *ckpt["data_shape"]), dtype=np.uint8)
    labels = torch.from_numpy(rng.integers(0, ckpt["net_config"]["num_classes"], batch))
    return parts.codec.encode(data), labels


def load_models(checkpoints: dict[str, str]) -> dict[str, tuple]:
    """{run: (parts, network on its runtime's device, checkpoint, runtime)}: every model stays on the device
    while the others are timed beside it."""
    models = {}
    for run, path in checkpoints.items():
        parts, net, ckpt = load_checkpoint(path)
        runtime = Runtime(parts.cfg.runtime)
        parts.codec.to(runtime.device)
        models[run] = (parts, runtime.prepare(net), ckpt, runtime)
    return models


def time_sampling(
    models: dict,
    loops: dict[str, list[int]],
    batch_sizes: list[int],
    repeats: int,
    warmup: int,
    seed: int = 0,
    memory: bool = False,
) -> list[dict]:
    """Per batch size, every (run, L) sampling one batch with the whole sampler, timed in interleaved rotating
    repeats after warm-up: rows {run, loops_eval, batch_size, seconds}; with memory also peak_memory_gib (the
    call's allocations plus the model's weights)."""
    device = next(iter(models.values()))[3].device
    rows = []
    for batch in batch_sizes:
        calls = {}
        for run, (parts, net, _, runtime) in models.items():
            labels = runtime.to(balanced_labels(batch, net.cfg.num_classes))
            for loop in loops[run]:
                calls[(run, loop)] = functools.partial(generate, parts, net, loop, labels, seed, batch, runtime=runtime)
        for (run, loop), seconds in interleaved(calls, device, repeats, warmup).items():
            row = {"run": run, "loops_eval": loop, "batch_size": batch, "seconds": seconds}
            if memory:
                row["peak_memory_gib"] = peak_memory_gib(
                    calls[(run, loop)], device, resident=weight_bytes(models[run][1])
                )
            rows.append(row)
    return rows


def measure(targets: dict[str, str], loops: dict[str, list[int]], settings: dict, seed: int = 0) -> dict:
    """targets: {run: checkpoint}; loops: {run: the loop counts it was evaluated at}; settings:
    efficiency_settings."""
    models = load_models(targets)
    runtime = next(iter(models.values()))[3]
    device = runtime.device
    sampling = time_sampling(
        models, loops, settings["batch_sizes"], settings["repeats"], settings["warmup"], seed, memory=True
    )
    steps, memory = {}, {}
    for run, (parts, net, ckpt, rt) in models.items():
        tokens, labels = _training_batch(parts, ckpt, settings["train_batch"], seed)
        net.train()
        since = torch.cuda.memory_allocated(device) if device.type == "cuda" else None
        steps[run] = train_step(rt, parts.cfg.model.family, parts.generator, net, tokens, labels, parts.cfg.train.l_min)
        # the step's gradients, optimiser state and EMA are allocated after `since`; the weights were there before
        memory[run] = peak_memory_gib(steps[run], device, since, weight_bytes(net))
    training = [
        {"run": run, "batch_size": settings["train_batch"], "seconds": timed, "peak_memory_gib": memory[run]}
        for run, timed in interleaved(steps, device, settings["repeats"], settings["warmup"]).items()
    ]
    return {
        "settings": settings,
        "timer": "CUDA events around each call" if device.type == "cuda" else "perf_counter around each call",
        "order": "interleaved, rotating; warm-up calls untimed",
        "memory": "peak allocated by the CUDA allocator during one call after a warm-up call, counting the model's "
        "own only: sampling, its weights and the call's allocations; training, its weights, gradients, optimiser "
        "state, EMA and the step's allocations"
        if device.type == "cuda"
        else "not measured: peak memory is read from the CUDA allocator",
        "sampling": sampling,
        "training": training,
        **provenance(runtime),
    }


def _pairs(table: pd.DataFrame) -> dict[str, list[tuple[str, str, int]]]:
    """{comparison: [(ELT run, unshared run, ELT's L_max)]}: the groups that hold both, per seed."""
    out = {}
    for group, rows in table.groupby("group"):
        families = rows.drop_duplicates("run").set_index("family")
        if {"elt", "unshared"} <= set(families.index):
            elt = families.loc["elt"]
            out.setdefault(comparison_name(group), []).append(
                (elt.run, families.loc["unshared"].run, int(elt.loops_train))
            )
    return out


def claims(table: pd.DataFrame, record: dict, audit_settings: dict) -> list[dict]:
    """Per comparison with ELT and its unshared baseline: throughput at each batch size, training step time,
    and peak memory in training and in sampling (at the largest batch), judged on their intervals."""
    level, tol = audit_settings["level"], audit_settings["throughput_tolerance"]
    sampling = {(s["run"], s["loops_eval"], s["batch_size"]): s for s in record["sampling"]}
    training = {t["run"]: t for t in record["training"]}
    device = record.get("device", "?")
    out = []
    for name, pairs in sorted(_pairs(table).items()):
        g = SimpleNamespace(name=name, metric="seconds", seeds=[], training_noise="not applicable: timings")
        for batch in record["settings"]["batch_sizes"]:
            stat = paired_speed(
                [
                    (sampling[(elt, l_max, batch)]["seconds"], sampling[(base, 1, batch)]["seconds"])
                    for elt, base, l_max in pairs
                ],
                level,
            )
            out.append(
                _judged(
                    g,
                    f"throughput_batch_{batch}",
                    f"ELT at L_max samples at least as fast as the unshared model at batch {batch} (within "
                    f"{tol:.0%}; the paper: {PAPER_THROUGHPUT})",
                    "samples/s of ELT at L_max / unshared, paired interleaved repeats (whole sampler)",
                    stat,
                    1 - tol,
                    False,
                    {"device": device, "batch_size": batch, "repeats": stat.units},
                )
            )
        stat = paired_speed([(training[elt]["seconds"], training[base]["seconds"]) for elt, base, _ in pairs], level)
        out.append(
            _judged(
                g,
                "training_step_time",
                f"ELT's training step (ILSD) is at least as fast as the unshared model's (within {tol:.0%})",
                "steps/s of ELT / unshared, paired interleaved repeats",
                stat,
                1 - tol,
                False,
                {"device": device, "batch_size": record["settings"]["train_batch"], "repeats": stat.units},
            )
        )
        largest = max(record["settings"]["batch_sizes"])
        memory = {
            "training_memory": (
                "ELT's peak training memory is at most the unshared model's",
                [(training[elt]["peak_memory_gib"], training[base]["peak_memory_gib"]) for elt, base, _ in pairs],
            ),
            "sampling_memory": (
                f"ELT's peak sampling memory at batch {largest} is at most the unshared model's",
                [
                    (
                        sampling[(elt, l_max, largest)]["peak_memory_gib"],
                        sampling[(base, 1, largest)]["peak_memory_gib"],
                    )
                    for elt, base, l_max in pairs
                ],
            ),
        }
        for claim, (statement, values) in memory.items():
            statistic = "peak GiB of ELT / unshared (one measurement: a fixed program's peak allocation repeats)"
            if any(e is None or b is None for e, b in values):
                out.append(_claim(g, claim, statement, statistic, "", None, NOT_MEASURED, record["memory"]))
                continue
            ratio = float(np.mean([e / b for e, b in values]))
            verdict = HOLDS if ratio <= 1.0 else FAILS
            stat = Statistic(ratio, ratio, ratio, len(values), "measurements")
            evidence = {"elt_gib": [e for e, _ in values], "unshared_gib": [b for _, b in values], "device": device}
            reason = f"ratio {ratio:.3g} {'<=' if verdict == HOLDS else '>'} 1"
            out.append(_claim(g, claim, statement, statistic, "<= 1", stat, verdict, reason, None, evidence))
    return out
