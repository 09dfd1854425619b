"""Run configuration: nested dataclasses read strictly from YAML or JSON.

Every value the paper leaves open (L_min, norm placement, the diffusion target, sampler settings,
guidance) is a field here, so it lands in every checkpoint and result record.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from elt.errors import UserError
from elt.models.sizes import width
from elt.runtime import RuntimeConfig, resolve_device
from elt.runtime import check as check_runtime

GENERATORS = ("masked", "diffusion")
ACTIVATIONS = ("gelu", "gelu_tanh")
FAMILIES = ("elt", "looped", "unshared", "shallow")
DATASETS = (
    "digits",
    "shapes",
    "tiles",
    "automata",
    "folder",
    "moving_digits",
    "moving_shapes",
    "moving_tiles",
    "ucf101",
    "imagenet",
)
PRETRAINED_CODECS = {"sd_vae": "diffusion", "maskgit_vqgan": "masked"}  # codec -> the generator it serves
VIDEO_DATASETS = ("moving_digits", "moving_shapes", "moving_tiles", "ucf101")


@dataclass
class DataConfig:
    dataset: str = "digits"  # digits | shapes | tiles | automata (elt.data.shapes) | folder (class-per-folder
    # images) | moving_digits | moving_shapes | moving_tiles | ucf101 (videos) | imagenet
    path: str | None = (
        None  # folder: root with one sub-folder per class; ucf101: the UCF-101 root; imagenet: train/ and val/
    )
    image_size: int = (
        8  # folder, ucf101: frames resized to this (square); imagenet: ADM center crop; moving_digits: canvas side
    )
    channels: int = 1  # 1 = grayscale, 3 = RGB (ucf101)
    held_out_fraction: float = 0.25  # stratified split; the held-out part is the metrics' reference
    split_seed: int = 0  # also seeds the moving-digit trajectories
    levels: int = 17  # intensity levels per pixel; digits are exactly 0..16
    frames: int = 16  # video datasets: frames per clip
    frame_stride: int = 1  # ucf101: keep every k-th decoded frame
    resize: str = "short_side"  # ucf101 frames: short_side (MAGVIT: short side to image_size, centre crop) |
    # crop_square (centre square, then resized: this harness's earlier preprocessing)
    windows: str = "first"  # ucf101 training: first (each video's first clip) | all (a random clip of each video
    # per draw, from every clip window_step kept frames apart: what MAGVIT's input pipeline trains on)
    window_step: int = 1  # windows all: kept frames between clip starts (the tokenizer's temporal patch saves space)
    fold: int = 1  # ucf101: official split 1, 2 or 3 (trainlist/testlist); held_out_fraction is unused
    num_classes: int | None = (
        None  # classes of a data set that may not be here yet (dry runs, describe); checked when read
    )
    on_bad_file: str = "stop"  # pre-encoding a file that cannot be read: stop | skip (listed in the shards' manifest)
    hflip: bool = False  # training sees each example mirrored left-right with probability 1/2 (ADM, DiT, MaskGIT);
    # the mirrored copy is encoded once beside the original (fast-DiT), so codes and latents flip too

    @property
    def is_video(self) -> bool:
        return self.dataset in VIDEO_DATASETS


@dataclass
class ModelConfig:
    generator: str = "masked"  # masked (MaskGIT tokens) | diffusion (DiT denoiser)
    family: str = "elt"  # elt (ILSD) | looped (vanilla) | unshared (N*L layers) | shallow (N layers)
    width: str = "XS"  # name in elt.models.sizes.WIDTHS
    n_unique: int = 2  # N: unique layers in the looped block
    loops: int = 4  # L_max: loops in training (for unshared/shallow: the ELT run it is matched to)
    patch_size: int = 1  # diffusion: pixels per patch side
    patch_time: int = 1  # diffusion on video: frames per tubelet
    activation: str = "gelu"  # MLP nonlinearity: gelu (exact) | gelu_tanh (DiT's approximation, ~5x slower on CPUs)
    norm: str = "pre"  # LayerNorm placement in each layer: pre (DiT) | post (BERT, MaskGIT's transformer; masked only)
    dropout: float = 0.0  # on attention weights and both residual branches in training (MaskGIT: 0.1)


@dataclass
class TrainConfig:
    steps: int = 1000
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.99])
    warmup_steps: int = 50
    grad_clip: float | None = 1.0  # global gradient norm bound; null = no clipping (DiT)
    lr_schedule: str = "cosine"  # after warm-up: cosine (decays to lr_final x lr at the last step) | constant (DiT)
    lr_final: float = 0.1  # cosine: the last step's share of the peak learning rate
    label_smoothing: float = 0.0  # masked: on the cross-entropy with the true tokens (MaskGIT: 0.1)
    l_min: int = 1  # ILSD draws L_int uniformly from [l_min, loops)
    label_drop: float = 0.1  # share of labels replaced by the null class (classifier-free guidance)
    checkpoint_every: int = 200
    threads: int = 1  # torch CPU threads; the pipeline runs several jobs side by side
    ema_decay: float = 0.0  # EMA of the weights, sampled from by default (DiT: 0.9999); 0 = no EMA


@dataclass
class CodecConfig:
    """What a generator models: pixels (levels for masked), codes of this harness's VQ tokenizer, or a
    pretrained codec from a local path: the SD VAE's latents (diffusion), MaskGIT VQGAN tokens (masked)."""

    tokenizer: str | None = None  # a tokenizer file from 'elt tokenizer' (the pipeline trains one); null = pixel levels
    tokens: str | None = None  # pre-tokenized training data (.npz from 'elt tokenizer'); null = encode at start
    pretrained: str | None = None  # sd_vae (diffusers AutoencoderKL) | maskgit_vqgan; null = none
    weights: str | None = None  # pretrained: the VAE's diffusers folder, or the VQGAN's state dict file
    subfolder: str | None = None  # sd_vae: the VAE's sub-folder of `weights` (vae in a whole pipeline folder)
    latent_channels: int = (
        4  # sd_vae: latent channels and spatial downsampling (SD's), checked against the VAE's config
    )
    downsampling: int = 8
    vqgan: str = "maskgit"  # maskgit_vqgan: the layout (elt.codecs.vqgan.LAYOUTS) the weights must match
    latents: str = "mean"  # sd_vae: mean (the posterior mean) | sample (latent_dist.sample(), as DiT's training)
    shards: str | None = (
        None  # pre-encoded training data from 'elt encode' (streamed; any codec); null = encode at start
    )


@dataclass
class MaskedConfig:
    sampling_steps: int = 8
    temperature_min: float = 0.5  # token temperature at step k of K: min + range * (1 - (k+1)/K)
    temperature_range: float = 0.8
    remask_noise: float = 1.0  # Gumbel noise on confidences, scaled by (1 - (k+1)/K): MaskGIT's choice temperature
    confidence: str = "tempered"  # re-masking confidences from the tempered probabilities the tokens were drawn
    # from, or untempered ones (MaskGIT: log softmax of the raw logits)
    guidance: float = 1.0  # classifier-free guidance scale; 1 = off (one forward per step)


@dataclass
class DiffusionConfig:
    target: str = "x0"  # what the network predicts: x0 (as the paper writes) | eps | v
    schedule_shift: float = 1.0  # shifted cosine: logSNR(t) = -2 log tan(pi t / 2) + 2 log shift
    logsnr_min: float = -15.0
    logsnr_max: float = 15.0
    sigmoid_bias: float = 2.0  # loss weight sigmoid(bias - logSNR) on the eps-space MSE
    sampler: str = "ddim"  # ddim (deterministic) | ddpm (ancestral)
    sampling_steps: int = 25
    guidance: float = 1.0  # 1 = off
    clip_x0: bool | None = None  # clamp x0 to [-1, 1] at each sampling step; null = on for pixels, off for
    # latents (SD-VAE latents have unit spread: DiT samples them with clip_denoised=False)


@dataclass
class RunConfig:
    run: str = "run"
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    codec: CodecConfig = field(default_factory=CodecConfig)
    masked: MaskedConfig = field(default_factory=MaskedConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)  # where and how it computes (elt.runtime)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def identity(self) -> dict:
        return identity(self.to_dict())

    @property
    def sampling_steps(self) -> int:
        return self.masked.sampling_steps if self.model.generator == "masked" else self.diffusion.sampling_steps

    @property
    def guidance(self) -> float:
        return self.masked.guidance if self.model.generator == "masked" else self.diffusion.guidance


def identity(run_config: dict) -> dict:
    """What makes two runs the same run (a RunConfig dict, e.g. a checkpoint's): everything but the
    runtime, since a run may resume on another device, precision or number of ranks."""
    return {k: v for k, v in run_config.items() if k != "runtime"}


def _check_type(value, hint, key: str):
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        hint = next(h for h in options if h is not type(None))
        origin = typing.get_origin(hint)
    if origin is list:
        if not isinstance(value, list):
            raise UserError(f"config key {key!r} must be a list, got {value!r}")
        (inner,) = typing.get_args(hint)
        return [_check_type(v, inner, key) for v in value]
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, str, bool) and (type(value) is not hint):
        raise UserError(f"config key {key!r} must be {hint.__name__}, got {type(value).__name__} {value!r}")
    return value


def parse_section(cls, data, prefix: str = ""):
    """A dataclass from a mapping, strictly: unknown keys and wrong types are one-line UserErrors."""
    if not isinstance(data, dict):
        raise UserError(f"config section {prefix.rstrip('.') or '<top>'!r} must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise UserError(
            f"unknown config key {prefix + unknown[0]!r}: known keys here are {', '.join(sorted(names))}; fix the "
            "spelling"
        )
    kwargs = {}
    for name, value in data.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = parse_section(hint, value, f"{prefix}{name}.")
        else:
            kwargs[name] = _check_type(value, hint, prefix + name)
    return cls(**kwargs)


def _check_choice(value, choices, key):
    if value not in choices:
        raise UserError(f"config key {key!r} is {value!r}: use one of {', '.join(choices)}")


def validate(cfg: RunConfig) -> RunConfig:
    m = cfg.model
    _check_choice(m.generator, GENERATORS, "model.generator")
    _check_choice(m.family, FAMILIES, "model.family")
    _check_choice(m.activation, ACTIVATIONS, "model.activation")
    _check_choice(cfg.data.dataset, DATASETS, "data.dataset")
    _check_choice(cfg.diffusion.target, ("x0", "eps", "v"), "diffusion.target")
    _check_choice(cfg.diffusion.sampler, ("ddim", "ddpm"), "diffusion.sampler")
    _check_choice(m.norm, NORMS, "model.norm")
    _check_choice(cfg.data.resize, ("short_side", "crop_square"), "data.resize")
    _check_choice(cfg.data.windows, ("first", "all"), "data.windows")
    if cfg.data.windows == "all" and cfg.data.dataset != "ucf101":
        raise UserError(
            f"data.windows all cuts clips from videos longer than a clip; {cfg.data.dataset} examples are whole "
            "clips: set data.windows first"
        )
    _check_choice(cfg.train.lr_schedule, LR_SCHEDULES, "train.lr_schedule")
    _check_choice(cfg.codec.latents, ("mean", "sample"), "codec.latents")
    _check_choice(cfg.masked.confidence, ("tempered", "untempered"), "masked.confidence")
    _check_recipe(cfg)
    width(m.width)
    for key, value in [
        ("model.n_unique", m.n_unique),
        ("model.loops", m.loops),
        ("train.steps", cfg.train.steps),
        ("train.batch_size", cfg.train.batch_size),
        ("masked.sampling_steps", cfg.masked.sampling_steps),
        ("diffusion.sampling_steps", cfg.diffusion.sampling_steps),
        ("train.l_min", cfg.train.l_min),
        ("data.frames", cfg.data.frames),
        ("data.frame_stride", cfg.data.frame_stride),
        ("data.window_step", cfg.data.window_step),
        ("model.patch_size", m.patch_size),
        ("model.patch_time", m.patch_time),
    ]:
        if value < 1:
            raise UserError(f"config key {key!r} is {value}: it must be at least 1")
    if m.family == "elt" and m.loops > 1 and not cfg.train.l_min < m.loops:
        raise UserError(f"train.l_min={cfg.train.l_min} must be below model.loops={m.loops} for ILSD: lower l_min")
    if cfg.data.dataset == "folder" and not cfg.data.path:
        raise UserError(
            "data.dataset is 'folder' but data.path is empty: set data.path to a class-per-folder image root"
        )
    if cfg.data.dataset in ("ucf101", "imagenet") and not cfg.data.path:
        raise UserError(
            f"data.dataset is {cfg.data.dataset!r} but data.path is empty: set data.path to the UCF-101 root "
            "(class folders and ucfTrainTestlist/) or the ImageNet root (train/ and val/)"
        )
    if cfg.data.dataset == "imagenet" and cfg.data.channels != 3:
        raise UserError(f"imagenet needs data.channels 3 (got {cfg.data.channels}): fix it")
    if cfg.data.dataset == "ucf101" and (cfg.data.channels != 3 or cfg.data.fold not in (1, 2, 3)):
        raise UserError(
            f"ucf101 needs data.channels 3 and data.fold 1, 2 or 3 (got {cfg.data.channels}, {cfg.data.fold}): fix them"
        )
    if cfg.codec.tokens and not cfg.codec.tokenizer:
        raise UserError(
            "codec.tokens is set but codec.tokenizer is not: name the tokenizer that made the tokens (sampling "
            "decodes with it)"
        )
    if cfg.codec.tokenizer and m.generator != "masked":
        raise UserError("codec.tokenizer is for the masked generator: remove it, or set model.generator to masked")
    _check_codec(cfg)
    _check_choice(cfg.data.on_bad_file, BAD_FILE_POLICIES, "data.on_bad_file")
    if cfg.data.channels not in (1, 3):
        raise UserError(f"config key 'data.channels' is {cfg.data.channels}: use 1 (grayscale) or 3 (RGB)")
    if not 0 <= cfg.train.label_drop < 1:
        raise UserError(f"config key 'train.label_drop' is {cfg.train.label_drop}: use a share in [0, 1)")
    if not 0 <= cfg.train.ema_decay < 1:
        raise UserError(f"config key 'train.ema_decay' is {cfg.train.ema_decay}: use a decay in [0, 1) (0 = no EMA)")
    check_runtime(cfg.runtime)
    return cfg


BAD_FILE_POLICIES = ("stop", "skip")
NORMS = ("pre", "post")
LR_SCHEDULES = ("cosine", "constant")


def _check_recipe(cfg: RunConfig) -> None:
    """The public recipes' settings (elt.config fields from model.norm on): ranges and what they apply to."""
    t, m = cfg.train, cfg.model
    for key, value in [("model.dropout", m.dropout), ("train.label_smoothing", t.label_smoothing)]:
        if not 0 <= value < 1:
            raise UserError(f"config key {key!r} is {value}: use a share in [0, 1)")
    if not 0 <= t.lr_final <= 1:
        raise UserError(f"config key 'train.lr_final' is {t.lr_final}: use a share of train.lr in [0, 1]")
    if t.grad_clip is not None and t.grad_clip <= 0:
        raise UserError(f"config key 'train.grad_clip' is {t.grad_clip}: use a positive bound, or null for none")
    if m.norm == "post" and m.generator != "masked":
        raise UserError("model.norm post is MaskGIT's (masked) layout; DiT's adaLN needs pre: set model.norm pre")
    if t.label_smoothing and m.generator != "masked":
        raise UserError("train.label_smoothing applies to the masked generator's cross-entropy: set it to 0")
    if cfg.codec.latents == "sample" and cfg.codec.pretrained != "sd_vae":
        raise UserError(
            "codec.latents sample draws from the SD VAE's posterior: set codec.pretrained sd_vae or codec.latents mean"
        )


def _check_codec(cfg: RunConfig) -> None:
    c, generator = cfg.codec, cfg.model.generator
    if c.pretrained is not None:
        _check_choice(c.pretrained, tuple(PRETRAINED_CODECS), "codec.pretrained")
        if PRETRAINED_CODECS[c.pretrained] != generator:
            raise UserError(
                f"codec.pretrained {c.pretrained} serves the {PRETRAINED_CODECS[c.pretrained]} generator, not "
                f"{generator}: "
                "change one of them"
            )
        if not c.weights:
            raise UserError(
                f"codec.pretrained is {c.pretrained} but codec.weights is empty: set it to the local weights path"
            )
        if c.tokenizer:
            raise UserError("codec.tokenizer and codec.pretrained both name a codec: keep one")
    elif c.weights or c.subfolder:
        raise UserError(
            "codec.weights is set but codec.pretrained is not: name the codec (sd_vae or maskgit_vqgan) or remove "
            "the weights"
        )
    if c.shards and c.tokens:
        raise UserError("codec.shards and codec.tokens both name pre-encoded training data: keep one")
    if cfg.data.dataset == "imagenet" and not c.shards:
        raise UserError(
            "data.dataset imagenet trains from pre-encoded shards: run 'elt encode' and set codec.shards to its folder"
        )


def from_dict(data: dict) -> RunConfig:
    return validate(parse_section(RunConfig, data))


def load(path: str | Path) -> RunConfig:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file {str(path)!r} does not exist: pass --config with a YAML or JSON run config")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        first = str(err).splitlines()[0]
        raise UserError(f"config file {str(path)!r} is not valid YAML ({first}): fix its syntax") from None
    return from_dict(data)


def dump(cfg: RunConfig) -> str:
    return json.dumps(cfg.to_dict(), indent=2, sort_keys=True)


def merge(base: dict, overrides: dict) -> dict:
    """Nested dict update that returns a new dict (lists and scalars are replaced)."""
    out = dict(base)
    for key, value in overrides.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def profile_device(profile: dict) -> str:
    """The resolved device of a pipeline profile's `runtime:` section (default auto), for the steps that
    are not a run (reference features, evaluations): they compute there at fp32."""
    return str(
        resolve_device(check_runtime(parse_section(RuntimeConfig, profile.get("runtime") or {}, "runtime.")).device)
    )
