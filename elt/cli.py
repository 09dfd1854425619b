"""The `elt` command line: train, sample, describe (and the harness's evaluation commands).

Each command imports the library inside its function: `elt --help` and argument errors then answer in
0.04 s instead of the 2.5 s that importing torch takes."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import yaml

from elt import cpu_kernels
from elt.errors import UserError


def parse_loops(text: str) -> list[int]:
    """'4', '1,2,4' or '1-4' -> a list of loop counts."""
    try:
        loops = []
        for part in text.split(","):
            lo, _, hi = part.partition("-")
            loops += list(range(int(lo), int(hi) + 1)) if hi else [int(lo)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a loop count list: write e.g. 4, 1,2,4 or 1-4") from None
    if not loops or min(loops) < 1:
        raise argparse.ArgumentTypeError(f"loop counts {text!r} must all be >= 1")
    return loops


def cmd_train(args):
    from elt import config
    from elt.train import train

    cfg = config.load(args.config)
    for key in ("device", "precision"):
        if getattr(args, key):
            setattr(cfg.runtime, key, getattr(args, key))
    record = train(config.validate(cfg), args.out, progress=not args.quiet, set_aside_stale=args.set_aside_stale)
    print(
        json.dumps({k: record[k] for k in ("run", "steps", "wall_seconds", "loss_first", "loss_last", "unique_params")})
    )


def cmd_encode(args):
    from elt import config
    from elt.data.shards import encode

    cfg = config.load(args.config)
    for key in ("device", "precision"):
        if getattr(args, key):
            setattr(cfg.runtime, key, getattr(args, key))
    out = args.out or cfg.codec.shards
    if not out:
        raise UserError("no shard folder: pass --out or set codec.shards in the run config")
    manifest = encode(config.validate(cfg), args.split, out, args.shard_size, args.batch_size, progress=not args.quiet)
    print(
        json.dumps(
            {k: manifest[k] for k in ("total", "shard_size", "codec")}
            | {"skipped": len(manifest["skipped"]), "out": str(out)}
        )
    )


def cmd_paper_metrics(args):
    from elt.eval.paper import image_metrics
    from elt.files import write_json
    from elt.runtime import resolve_device

    record = image_metrics(args.samples, args.reference, args.inception_weights, resolve_device(args.device or "auto"))
    write_json(args.out, record)
    print(json.dumps({k: record.get(k) for k in ("num_samples", "fid_adm", "fid_clean", "inception_score")}))


def cmd_paper_selftest(args):
    from elt.eval.paper import ADM_PUBLISHED, self_test
    from elt.files import write_json
    from elt.runtime import resolve_device

    expected = {"fid_adm": args.expect_fid, "inception_score": args.expect_is}
    expected = {k: ADM_PUBLISHED[k] if v is None else v for k, v in expected.items()}
    record = self_test(
        args.reference, args.samples, args.inception_weights, resolve_device(args.device or "auto"), expected
    )
    if args.out:
        write_json(args.out, record)
    for name, check in record["checks"].items():
        verdict = "ok" if check["passed"] else "OFF"
        print(
            f"{name}: {check['measured']:.4f} against {check['expected']:.4f} "
            f"(tolerance {check['tolerance']}): {verdict}"
        )
    if not record["passed"]:
        print(
            "elt paper-selftest: the protocol does not reproduce the expected numbers on this machine", file=sys.stderr
        )
        sys.exit(1)


def cmd_calibrate(args):
    from elt.harness.calibrate import calibrate

    table = calibrate(
        args.metrics,
        args.out,
        runs_dir=args.runs,
        latency_csv=args.latency,
        batch_sizes=tuple(args.batch_sizes),
        repeats=args.repeats,
        warmup=args.warmup,
        budget_ms=args.budget_ms,
        metric=args.metric,
    )
    print(f"{len(table)} (run, L, batch) rows, {int(table.pareto.sum())} on the Pareto set: {args.out}/calibration.md")


def cmd_sample(args):
    from elt.methods.schedule import EarlyExit, parse_schedule
    from elt.sample import sample

    if args.early_exit is not None:
        if args.exit_range is None:
            from elt.runs import load_checkpoint

            args.exit_range = (1, load_checkpoint(args.checkpoint)[1].cfg.loops)
        plans = [EarlyExit(args.early_exit, *args.exit_range)]
    elif args.schedule is not None:
        plans = [parse_schedule(args.schedule)]
    else:
        plans = args.loops
    runtime = {key: getattr(args, key) for key in ("device", "precision") if getattr(args, key)}
    for path in sample(
        args.checkpoint,
        plans,
        args.num,
        args.seed,
        args.out,
        threads=args.threads,
        runtime=runtime,
        weights=args.weights,
        shards=args.shards,
        only_shard=args.shard,
        guidance=args.guidance,
        labels=args.labels,
    ):
        print(path)


def parse_batch_sizes(text: str) -> list[int]:
    try:
        return parse_loops(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of batch sizes >= 1: write e.g. 1,8 or 1-4") from None


def parse_exit_range(text: str) -> tuple[int, int]:
    low, sep, high = text.partition("-")
    if not (sep and low.isdigit() and high.isdigit()):
        raise argparse.ArgumentTypeError(f"{text!r} is not a loop range: use L_min-L_max, e.g. 1-4")
    return int(low), int(high)


def cmd_describe(args):
    from elt import config
    from elt.eval.accounting import describe
    from elt.harness.describe import describe_profile, profile_markdown
    from elt.models.looped import build
    from elt.runs import assemble

    described = []
    for path in args.config:
        try:
            raw = yaml.safe_load(Path(path).read_text()) if Path(path).is_file() else None
        except yaml.YAMLError:
            raw = None  # config.load below says what is wrong, in one line
        if isinstance(raw, dict) and "grid" in raw:  # a pipeline profile: every run of its grid
            profile = load_profile(path)
            rows = describe_profile(profile)
            if args.run_configs:
                from elt.files import write_json
                from elt.harness.grid import expand

                for run, run_cfg in expand(profile).items():
                    write_json(Path(args.run_configs) / f"{run}.json", run_cfg)
            if not args.json:
                print(profile_markdown(path, rows))
                continue
            described.extend(rows)
            continue
        cfg = config.load(path)
        parts = assemble(cfg)
        loops = args.loops or list(range(1, parts.net_cfg.loops + 1))  # baselines: loops = 1, one depth
        described.append(describe(parts, build(parts.net_cfg), loops))
    if described:
        print(json.dumps(described, indent=2))


def load_profile(path: str) -> dict:
    """A pipeline profile as Snakemake sees it: the harness's config/default.yaml with the file merged
    over it (mappings merge, lists and values replace)."""
    from elt import config

    default = Path(__file__).resolve().parents[1] / "config/default.yaml"
    try:
        overlay = yaml.safe_load(Path(path).read_text()) or {}
    except yaml.YAMLError as err:
        raise UserError(f"profile {path!r} is not valid YAML ({str(err).splitlines()[0]}): fix its syntax") from None
    return config.merge(yaml.safe_load(default.read_text()), overlay) if Path(path).resolve() != default else overlay


def cmd_check(args):
    from elt.harness.check import check_files

    text, result = check_files(args.reference, args.metrics, args.provenance)
    print(text)
    if not result.passed:
        sys.exit(1)


def cmd_reference(args):
    from elt.files import read_json, write_json
    from elt.harness.check import build_reference, provenance_beside, run_record, validation_summary
    from elt.provenance import provenance

    records = [
        run_record(read_json(p, "provenance", "rerun the pipeline that wrote the metrics"))
        for p in map(provenance_beside, args.metrics)
        if p
    ]
    # the set-up a check compares with for a bit-level report; none when the sources disagree or lack one
    record = records[0] if len(records) == len(args.metrics) and all(r == records[0] for r in records) else {}
    sources = {"metrics_files": [str(m) for m in args.metrics]}  # which runs the tolerances were measured on
    reference = build_reference(
        args.metrics,
        args.baseline_seed,
        args.k,
        args.profile,
        {**provenance(), **sources},
        args.false_alarm_rate,
        record,
        args.replicates,
    )
    write_json(args.out, reference)
    print(args.out)
    print(validation_summary(reference))


def cmd_tokenizer(args):
    from elt.data.tokens import tokenizer_step

    path = Path(args.config)
    if not path.is_file():
        raise UserError(
            f"config file {args.config!r} does not exist: pass a YAML file with data: and tokenizer: sections"
        )
    settings = yaml.safe_load(path.read_text()) or {}
    unknown = sorted(set(settings) - {"data", "tokenizer"})
    if unknown or "data" not in settings:
        raise UserError(
            f"config file {args.config!r} needs a data: section and optionally tokenizer:, not {unknown or 'nothing'}"
        )
    out = Path(args.out)
    summary = tokenizer_step(
        settings["data"],
        settings.get("tokenizer") or {},
        out / "tokenizer.pt",
        out / "tokenizer.json",
        out / "train_tokens.npz",
    )
    print(
        json.dumps({"held_out_error": summary["held_out_error"], "token_grid": summary["token_grid"], "out": str(out)})
    )


def cmd_export_png(args):
    from elt.sample import export_png

    print(f"{export_png(args.samples, args.out)} PNG files in {args.out}")


def cmd_job_seconds(args):
    from elt.files import atomic_path
    from elt.harness.job_seconds import markdown

    logs = sorted(Path(".snakemake/log").glob("*.snakemake.log")) if args.log is None else [Path(args.log)]
    if not logs or not logs[-1].is_file():
        raise UserError(f"no Snakemake log at {args.log or '.snakemake/log/'}: run the pipeline first, or pass its log")
    text = markdown(logs[-1], args.longest, args.work)
    print(text)
    if args.out:
        with atomic_path(args.out) as tmp:
            tmp.write_text(text)


def cmd_bench(args):
    from elt.files import write_json
    from elt.harness.bench import bench, summary_lines
    from elt.runtime import RuntimeConfig

    result = bench(
        RuntimeConfig(device=args.device or "auto", precision=args.precision or "fp32", compile=args.compile),
        args.scale,
        args.repeats,
    )
    out = (
        args.out
        or f"results/bench/{re.sub(r'[^A-Za-z0-9]+', '-', result['device_name']).strip('-').lower()}-{args.scale}.json"
    )
    write_json(out, result)
    print(summary_lines(result))
    print(out)


def add_runtime_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", help="override the run's runtime.device: auto, cpu, cuda or cuda:N")
    p.add_argument("--precision", choices=("fp32", "bf16"), help="override the run's runtime.precision")


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line that points at --help."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="elt", description="Elastic Looped Transformers: train, sample and audit looped generators."
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    p = sub.add_parser("train", help="train one run; resumes from DIR/checkpoint.pt if present")
    p.add_argument(
        "--config",
        required=True,
        help="run config (YAML or JSON with the sections of elt.config.RunConfig; the pipeline writes each run's "
        "as work/<profile>/runs/<run>/config.yaml)",
    )
    p.add_argument("--out", required=True, help="run directory: checkpoint.pt and train.json are written here")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--set-aside-stale",
        action="store_true",
        help="keep a state of another config as <name>.stale-<step>.pt and start afresh (the pipeline does)",
    )
    add_runtime_options(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("sample", help="sample a checkpoint at one or more loop counts")
    p.add_argument("--checkpoint", required=True, help="checkpoint.pt written by 'elt train'")
    plan = p.add_mutually_exclusive_group(required=True)
    plan.add_argument(
        "--loops", type=parse_loops, help="loop counts: 4, 1,2,4 or 1-6 (any L >= 1, beyond the trained L too)"
    )
    plan.add_argument(
        "--schedule",
        help="a loop count per sampling step: 'linear 1->4', 'step 1@0.5,4' or 1,2,2,4 (elt.methods.schedule)",
    )
    plan.add_argument(
        "--early-exit",
        type=float,
        metavar="THRESHOLD",
        help="stop looping each sample once its output moves less than THRESHOLD between loops (token "
        "distribution JS divergence for masked, relative change of the prediction for diffusion)",
    )
    p.add_argument(
        "--exit-range",
        type=parse_exit_range,
        default=None,
        metavar="LMIN-LMAX",
        help="with --early-exit: the loops each sample may use (default 1 to the trained L)",
    )
    p.add_argument(
        "--num",
        "--num-samples",
        dest="num",
        type=int,
        default=100,
        help="samples per loop count, labels cycling through the classes (default 100); under torchrun write "
        "--num-samples (torchrun takes --num for its own --numa-binding)",
    )
    p.add_argument("--seed", type=int, default=0, help="sampling seed, the same for every loop count (default 0)")
    p.add_argument("--out", required=True, help="output .npz; with several loop counts put {loops} in the name")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument(
        "--weights",
        choices=("ema", "raw"),
        default="ema",
        help="ema: the run's EMA weights when it kept them (default); raw: the optimised weights",
    )
    p.add_argument(
        "--shards",
        type=int,
        default=1,
        help="split --num into this many files, {shard} in --out, each with its own "
        "seed; under torchrun the ranks share them out (default 1)",
    )
    p.add_argument("--shard", type=int, help="with --shards: write only this shard (0-based)")
    p.add_argument("--guidance", type=float, help="classifier-free guidance scale instead of the run's own")
    p.add_argument(
        "--labels",
        choices=("balanced", "uniform"),
        default="balanced",
        help="balanced: cycling through the classes (default); uniform: drawn at random from --seed (ADM, DiT)",
    )
    add_runtime_options(p)
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser(
        "bench", help="time training steps (MFU against a measured matmul peak) and sampling forwards, ELT vs unshared"
    )
    p.add_argument(
        "--scale", choices=("tiny", "paper"), default="tiny", help="tiny widths (CPU) or the paper's ELT-L/XL (GPU)"
    )
    p.add_argument("--repeats", type=int, default=7, help="interleaved timed repeats per setting (default 7)")
    p.add_argument("--compile", action="store_true", help="torch.compile the networks")
    p.add_argument("--out", help="JSON to write (default results/bench/<device>-<scale>.json)")
    add_runtime_options(p)
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser(
        "describe", help="parameters and FLOPs: per loop count of run configs (JSON), or every run of a profile (table)"
    )
    p.add_argument(
        "--config",
        required=True,
        nargs="+",
        help="run configs, or pipeline profiles (config/*.yaml, config/paper/*.yaml: "
        "merged over config/default.yaml as Snakemake does)",
    )
    p.add_argument("--json", action="store_true", help="profiles: JSON rows instead of the table")
    p.add_argument(
        "--run-configs",
        metavar="DIR",
        help="profiles: also write each run's config to DIR/<run>.json (for elt encode / elt train)",
    )
    p.add_argument("--loops", type=parse_loops, help="loop counts to report (default 1..L_max of each run)")
    p.set_defaults(func=cmd_describe)
    p = sub.add_parser(
        "check",
        help="compare a metrics.csv with a committed reference (per-row and aggregate tests); exit 1 on regression",
    )
    p.add_argument("--reference", required=True, help="reference JSON, e.g. results/reference/default.json")
    p.add_argument("metrics", help="metrics.csv written by the pipeline")
    p.add_argument(
        "--provenance",
        help="provenance.json of the run (default: the one beside the metrics file); "
        "when the set-up equals the reference's, every number that moved is listed",
    )
    p.set_defaults(func=cmd_check)

    p = sub.add_parser(
        "reference",
        help="build a regression reference from multi-seed metrics: per-seed values, tolerances, detectable shifts, "
        "validation",
    )
    p.add_argument(
        "--metrics",
        required=True,
        nargs="+",
        help="metrics.csv files covering two or more training seeds; or a paper pipeline's paper_metrics.csv (one "
        "seed: its sampling noise, from the saved features)",
    )
    p.add_argument(
        "--replicates",
        type=int,
        default=20,
        help="paper results of one seed: bootstrap replicates of each row's samples that stand in for seeds "
        "(default 20)",
    )
    p.add_argument(
        "--baseline-seed",
        type=int,
        default=0,
        help="seed whose run names key the reference and whose numbers an exact repeat is compared with (default 0)",
    )
    p.add_argument(
        "--k",
        type=float,
        default=None,
        help="per-row tolerance in predictive seed standard deviations (default: the "
        "Student's t quantile that holds the per-row test's family-wise false-alarm rate over its rows)",
    )
    p.add_argument(
        "--false-alarm-rate",
        type=float,
        default=0.01,
        help="family-wise false-alarm rate of each test: per-row (Bonferroni over rows, unless --k) and aggregate "
        "(Holm over its tests) (default 0.01)",
    )
    p.add_argument("--profile", default="default", help="profile name recorded in the file")
    p.add_argument("--out", required=True, help="output JSON, e.g. results/reference/default.json")
    p.set_defaults(func=cmd_reference)

    p = sub.add_parser("tokenizer", help="train a 3D VQ tokenizer on a dataset and pre-tokenize its training split")
    p.add_argument(
        "--config",
        required=True,
        help="YAML with data: (as in a run config) and tokenizer: (elt.codecs.tokenizer.TokenizerConfig)",
    )
    p.add_argument(
        "--out",
        required=True,
        help="folder for tokenizer.pt, tokenizer.json (held-out error) and train_tokens.npz; "
        "runs use them as codec.tokenizer and codec.tokens",
    )
    p.set_defaults(func=cmd_tokenizer)

    p = sub.add_parser(
        "encode", help="pre-encode a data split with a run's codec into resumable shards (torchrun: over GPUs)"
    )
    p.add_argument(
        "--config", required=True, help="run config: its data: and codec: sections say what to read and how to encode"
    )
    p.add_argument("--split", default="train", help="train (default) or held_out")
    p.add_argument("--out", help="shard folder (default: the config's codec.shards)")
    p.add_argument("--shard-size", type=int, default=1024, help="examples per shard (default 1024)")
    p.add_argument("--batch-size", type=int, default=64, help="examples per codec call (default 64)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_runtime_options(p)
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser(
        "paper-metrics",
        help="FID (ADM's and clean resize) and Inception Score of image samples at the paper's protocol",
    )
    p.add_argument(
        "--samples",
        required=True,
        nargs="+",
        help="sample files of 'elt sample' (e.g. its --shards files; 50,000 in all for the paper)",
    )
    p.add_argument("--reference", required=True, help="ADM's reference batch .npz (arr_0 images and/or mu, sigma)")
    p.add_argument(
        "--inception-weights",
        help="pytorch-fid's pt_inception-2015-12-05 .pth for the Inception Score (default: not measured)",
    )
    p.add_argument("--out", required=True, help="the JSON record to write")
    p.add_argument("--device", help="where the Inception runs: auto (default), cpu, cuda or cuda:N")
    p.set_defaults(func=cmd_paper_metrics)

    p = sub.add_parser(
        "paper-selftest",
        help="before trusting any paper-protocol number: FID and IS of ADM's own sample batch against ADM's "
        "published 3.94 and 215.8; exit 1 when off",
    )
    p.add_argument("--reference", required=True, help="ADM's VIRTUAL_imagenet256_labeled.npz (needs mu and sigma)")
    p.add_argument("--samples", required=True, help="ADM's admnet_guided_upsampled_imagenet256.npz (arr_0 images)")
    p.add_argument("--inception-weights", required=True, help="pytorch-fid's pt_inception-2015-12-05 .pth (for the IS)")
    p.add_argument("--expect-fid", type=float, help="the FID to reproduce (default: ADM's published 3.9426)")
    p.add_argument("--expect-is", type=float, help="the Inception Score to reproduce (default: ADM's 215.837)")
    p.add_argument("--out", help="also write the record (measured, expected, provenance) here as JSON")
    p.add_argument("--device", help="where the Inception runs: auto (default), cpu, cuda or cuda:N")
    p.set_defaults(func=cmd_paper_selftest)

    p = sub.add_parser(
        "calibrate",
        help="per layout and loop count: sampling latency measured on this device against quality from the results; "
        "the Pareto set, and the best choice within a latency budget",
    )
    p.add_argument(
        "--metrics", required=True, help="the results' metrics.csv (e.g. results/metrics.csv) or paper_metrics.csv"
    )
    p.add_argument("--runs", help="the runs' folder holding <run>/checkpoint.pt (e.g. work/default/runs): measure")
    p.add_argument("--latency", help="a latency.csv an earlier calibration measured: reuse it instead of measuring")
    p.add_argument(
        "--batch-sizes", type=parse_batch_sizes, default=[1, 8], help="batch sizes to time: 1,8 or 1-4 (default 1,8)"
    )
    p.add_argument("--repeats", type=int, default=5, help="interleaved timed repeats per setting (default 5)")
    p.add_argument("--warmup", type=int, default=1, help="untimed batches per setting first (default 1)")
    p.add_argument("--budget-ms", type=float, help="a latency budget per batch: the best choice within it")
    p.add_argument(
        "--metric",
        help="the quality column (default: fd_domain for images, fvd_domain for videos; paper results: fid_adm, fvd)",
    )
    p.add_argument("--out", required=True, help="folder for calibration.md, .csv, .png and latency.csv")
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser("export-png", help="write the samples of an .npz file as PNGs (video: one strip per clip)")
    p.add_argument("samples", help=".npz written by 'elt sample' or the pipeline (work/<profile>/samples/...)")
    p.add_argument("--out", required=True, help="folder for the PNG files (named <index>_class<label>.png)")
    p.set_defaults(func=cmd_export_png)

    p = sub.add_parser(
        "job-seconds", help="per rule: jobs, job-seconds and share of a pipeline run, from Snakemake's log"
    )
    p.add_argument("log", nargs="?", help="a .snakemake/log/*.snakemake.log (default: the newest)")
    p.add_argument("--out", help="also write the table here (markdown), e.g. results/job_seconds.md")
    p.add_argument("--longest", type=int, default=15, help="how many of the longest jobs to list (default 15)")
    p.add_argument(
        "--work",
        help="the run's work folder (e.g. work/default): also list its training speeds, the machine's speed during "
        "the run",
    )
    p.set_defaults(func=cmd_job_seconds)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        cpu_kernels.check()
        args.func(args)
    except UserError as err:
        print(f"elt {args.command}: error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(f"elt {args.command}: interrupted; rerun the same command to resume", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
