"""`elt bench`: what ELT costs on this machine against its unshared baseline, measured properly.

For each layout pair (ELT N x L and the unshared N*L-layer model at equal FLOPs) of the masked
generator: the training step as elt.train runs it (ILSD for ELT, gradient clipping, AdamW, EMA, and
under torchrun DDP's all-reduce), its FLOPs counted by torch once on the eager network, the achieved
TFLOP/s and MFU against both a matrix-multiply peak measured in the same run and the device's
datasheet peak (known GPUs), peak device memory of each model measured alone; and the sampling
forward latency per loop count at several batch sizes. Timings are medians of interleaved repeats
(ELT and baseline alternate) after warm-up, taken after the device has finished (CUDA synchronise).
Figures go to results/bench/<device>.json; they are benchmarks, not tests.
"""

from __future__ import annotations

import dataclasses
import gc
import statistics
import time
from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from elt import config
from elt.codecs.pixels import PixelTokens
from elt.eval.accounting import CPU_ATTENTION
from elt.methods import ilsd
from elt.methods.masked import MaskedGenerator
from elt.models.looped import build, count_params
from elt.provenance import provenance
from elt.runs import layout
from elt.runtime import Runtime, RuntimeConfig
from elt.train import EMA, optimisation_step

# Dense tensor-core peaks from the vendors' datasheets (SXM parts), TFLOP/s: (name fragment, precision) ->
# peak; fp32 with runtime.tf32 counts against the TF32 peak.
DATASHEET_TFLOPS = {
    ("H200", "bf16"): 989.0,
    ("H200", "tf32"): 494.0,
    ("H200", "fp32"): 67.0,
    ("H100", "bf16"): 989.0,
    ("H100", "tf32"): 494.0,
    ("H100", "fp32"): 67.0,
    ("A100", "bf16"): 312.0,
    ("A100", "tf32"): 156.0,
    ("A100", "fp32"): 19.5,
}


def datasheet_peak(runtime: Runtime) -> float | None:
    """The datasheet's dense peak of this device at the runtime's precision, None when unknown (CPUs)."""
    described = runtime.describe()
    precision = "tf32" if described["precision"] == "fp32" and described["tf32"] else described["precision"]
    return next(
        (peak for (name, p), peak in DATASHEET_TFLOPS.items() if name in described["device_name"] and p == precision),
        None,
    )


@dataclass(frozen=True)
class Layout:
    name: str
    width: str
    n_unique: int
    loops: int


# The paper's ImageNet MaskGIT sizes (docs/paper.md) on 16x16 = 256 tokens of a 1024-code tokenizer; and
# tiny ones that a 2-core CPU times in a minute.
LAYOUTS = {
    "paper": [Layout("ELT-L", "L", 8, 3), Layout("ELT-XL", "XL", 7, 4)],
    "tiny": [Layout("ELT-XS", "XS", 2, 3), Layout("ELT-S", "S", 2, 4)],
    "test": [Layout("ELT-T", "T", 1, 2)],  # the tests' seconds-long run
}
SHAPES = {
    "paper": {"side": 16, "vocab": 1024, "train_batch": 64, "sample_batches": [1, 8, 64, 256]},
    "tiny": {"side": 8, "vocab": 17, "train_batch": 16, "sample_batches": [1, 8, 64]},
    "test": {"side": 4, "vocab": 5, "train_batch": 4, "sample_batches": [1, 2]},
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device) -> float:
    """Seconds of one call, to its end on the device: CUDA events on a GPU (no host timer between a launch and
    its kernels), perf_counter elsewhere."""
    _sync(device)
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def interleaved(fns: dict, device, repeats: int, warmup: int) -> dict[str, list[float]]:
    """Seconds of each named callable, `repeats` times, in an order rotating between repeats."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    names, seconds = list(fns), {name: [] for name in fns}
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            seconds[name].append(_timed(fns[name], device))
    return seconds


def summary(seconds: list[float]) -> dict:
    q = statistics.quantiles(seconds, n=4) if len(seconds) > 1 else [seconds[0]] * 3
    return {
        "median_ms": 1e3 * statistics.median(seconds),
        "q1_ms": 1e3 * q[0],
        "q3_ms": 1e3 * q[2],
        "repeats": len(seconds),
    }


def matmul_peak(runtime: Runtime, n: int, repeats: int) -> float:
    """TFLOP/s of an n x n matrix multiply in the runtime's precision (bf16 or fp32), median of repeats."""
    dtype = torch.bfloat16 if runtime.cfg.precision == "bf16" else torch.float32
    a, b = (torch.randn(n, n, device=runtime.device, dtype=dtype) for _ in range(2))
    seconds = interleaved({"mm": lambda: a @ b}, runtime.device, repeats, warmup=2)["mm"]
    return 2 * n**3 / statistics.median(seconds) / 1e12


def _member(lay: Layout, family: str, shape: dict):
    cfg = config.from_dict(
        {
            "model": {
                "generator": "masked",
                "family": family,
                "width": lay.width,
                "n_unique": lay.n_unique,
                "loops": lay.loops,
            },
            "masked": {"sampling_steps": 1},
        }
    )
    generator = MaskedGenerator(cfg, PixelTokens(shape["vocab"], (1, 1, shape["side"], shape["side"])))
    n, loops = layout(family, lay.n_unique, lay.loops)
    return cfg, generator, build(generator.net_config(1000, n, loops))


def random_tokens(generator, net, batch: int):
    """A batch of random tokens and labels for a masked generator's network."""
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, generator.codec.vocab_size, (batch, net.cfg.seq_len), generator=gen)
    return tokens, torch.randint(0, net.cfg.num_classes, (batch,), generator=gen)


def train_step(runtime: Runtime, family: str, generator, net, tokens, labels, l_min: int = 1):
    """One step of elt.train's loop on the given batch (draw, forward and backward of the real loss,
    clipping, AdamW, EMA): returns a closure."""
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4, fused=runtime.device.type == "cuda")
    ema = EMA(net, 0.9999)
    gen = torch.Generator().manual_seed(0)
    model, micro = runtime.prepare(net, train=True), runtime.micro_batch(len(labels))

    def step():
        inputs, l_int = ilsd.draw(generator, runtime.to(tokens, labels), family, l_min, net.cfg.loops, gen)
        opt.zero_grad(set_to_none=True)
        optimisation_step(model, generator, inputs, l_int, net.cfg.loops, 0.5, micro, runtime)
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        ema.update(net)

    return step


def _counted_flops(runtime_cfg: RuntimeConfig, family: str, generator, net, batch: int) -> int:
    """FLOPs of one training step, counted once on the eager network (a compiled one would count its graphs)."""
    runtime = Runtime(dataclasses.replace(runtime_cfg, compile=False))
    step = train_step(runtime, family, generator, net, *random_tokens(generator, net, batch))
    step()  # creates the optimiser state outside the counter
    counter = FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION)
    with counter:
        step()
    return counter.get_total_flops()


def peak_memory_gib(fn, device: torch.device, since: int | None = None, resident: int = 0) -> float | None:
    """Peak CUDA memory (GiB) of one call of fn after a warm-up call: the peak allocation above `since` (the bytes
    allocated when the caller began to set the model up; default: just before the measured call), plus `resident`
    bytes of the model's that were already there. None off CUDA: the peak is read from its allocator."""
    if device.type != "cuda":
        return None
    fn()
    torch.cuda.synchronize(device)
    since = torch.cuda.memory_allocated(device) if since is None else since
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    torch.cuda.synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - since + resident) / 2**30


def weight_bytes(net: torch.nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in net.parameters())


def _peak_memory_alone(runtime: Runtime, family: str, generator, net, batch: int) -> float | None:
    """Peak device memory (GiB) of a training step with only this model's weights, gradients and optimiser
    state on the device: the other model's are not there to inflate it."""
    if runtime.device.type != "cuda":
        return None
    since = torch.cuda.memory_allocated(runtime.device)
    net.to(runtime.device)
    step = train_step(runtime, family, generator, net, *random_tokens(generator, net, batch))
    peak = peak_memory_gib(step, runtime.device, since)
    del step
    net.zero_grad(set_to_none=True)
    net.to("cpu")
    gc.collect()
    torch.cuda.empty_cache()
    return peak


def bench(
    runtime_cfg: RuntimeConfig, scale: str = "tiny", repeats: int = 7, warmup: int = 2, matmul_n: int | None = None
) -> dict:
    runtime = Runtime(runtime_cfg)
    device, shape = runtime.device, SHAPES[scale]
    cuda = device.type == "cuda"
    peak, datasheet = matmul_peak(runtime, matmul_n or (8192 if cuda else 1024), repeats), datasheet_peak(runtime)
    rows = []
    for lay in LAYOUTS[scale]:
        members = {family: _member(lay, family, shape) for family in ("elt", "unshared")}
        flops, memory, steps = {}, {}, {}
        for family, (_, generator, net) in members.items():
            flops[family] = _counted_flops(runtime_cfg, family, generator, net, shape["train_batch"])
            memory[family] = _peak_memory_alone(runtime, family, generator, net, shape["train_batch"])
        for family, (_, generator, net) in members.items():
            steps[family] = train_step(
                runtime, family, generator, net, *random_tokens(generator, net, shape["train_batch"])
            )
        timed = interleaved(steps, device, repeats, warmup)
        train = {}
        for family, seconds in timed.items():
            tflops = flops[family] / statistics.median(seconds) / 1e12
            train[family] = {
                **summary(seconds),
                "flops_per_step": flops[family],
                "tflop_per_s": tflops,
                "mfu": tflops / peak,
                "mfu_datasheet": tflops / datasheet if datasheet else None,
                "peak_memory_gib": memory[family],
                "unique_params": count_params(members[family][2])["unique_params"],
            }
        sampling = []
        for batch in shape["sample_batches"]:
            forwards = {}
            for family, (_, _, net) in members.items():
                net.eval()
                model = runtime.prepare(net)
                tokens = torch.zeros(batch, net.cfg.seq_len, dtype=torch.long, device=device)
                labels = torch.zeros(batch, dtype=torch.long, device=device)
                for loops in range(1, lay.loops + 1) if family == "elt" else [1]:
                    # each timing binds its own network, inputs and loop count
                    forwards[f"{family} L={loops}"] = lambda m=model, t=tokens, y=labels, l=loops: _forward(
                        runtime, m, t, y, l
                    )
            timed = interleaved(forwards, device, repeats, warmup)
            sampling.append(
                {
                    "batch": batch,
                    **{name: summary(s) for name, s in timed.items()},
                    "elt_over_unshared_speed": statistics.median(timed["unshared L=1"])
                    / statistics.median(timed[f"elt L={lay.loops}"]),
                }
            )
        rows.append(
            {
                "layout": lay.__dict__,
                "unshared_layers": lay.n_unique * lay.loops,
                "train": train,
                "sampling_forward": sampling,
            }
        )
    return {
        "scale": scale,
        "matmul_peak_tflop_per_s": peak,
        "datasheet_peak_tflop_per_s": datasheet,
        "shape": shape,
        "warmup": warmup,
        "layouts": rows,
        "order": "interleaved, rotating",
        **provenance(runtime),
    }


@torch.no_grad()
def _forward(runtime: Runtime, model, tokens, labels, loops: int):
    with runtime.autocast():
        return model(tokens, labels, loops=loops)


def summary_lines(result: dict) -> str:
    """What `elt bench` prints: per layout pair, the training step and the sampling speed ratios."""
    lines = []
    for row in result["layouts"]:
        train = row["train"]
        lines.append(
            f"{row['layout']['name']}: train step {train['elt']['median_ms']:.1f} ms ({train['elt']['mfu']:.0%} MFU "
            f"of the measured matmul peak"
            + (f", {train['elt']['mfu_datasheet']:.0%} of the datasheet's" if train["elt"]["mfu_datasheet"] else "")
            + ") "
            f"vs unshared {train['unshared']['median_ms']:.1f} ms; sampling ELT/unshared speed at L_max: "
            + ", ".join(f"batch {s['batch']} {s['elt_over_unshared_speed']:.2f}x" for s in row["sampling_forward"])
        )
    return "\n".join(lines)
