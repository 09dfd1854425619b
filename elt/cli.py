"""The `elt` command line: train, sample, describe (and the harness's evaluation commands)."""
from __future__ import annotations

import argparse
import json
import sys

from .errors import UserError


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
    from . import config
    from .train import train

    record = train(config.load(args.config), args.out, progress=not args.quiet)
    print(json.dumps({k: record[k] for k in ("run", "steps", "wall_seconds", "loss_first", "loss_last", "unique_params")}))


def cmd_sample(args):
    from .sample import sample

    for path in sample(args.checkpoint, args.loops, args.num, args.seed, args.out, args.threads):
        print(path)


def cmd_describe(args):
    from . import config
    from .accounting import describe
    from .model import build
    from .runs import assemble

    cfgs = [config.load(path) for path in args.config]
    described = []
    for cfg in cfgs:
        parts = assemble(cfg)
        loops = args.loops or list(range(1, parts.net_cfg.loops + 1))  # baselines: loops = 1, one depth
        described.append(describe(parts, build(parts.net_cfg), loops))
    print(json.dumps(described, indent=2))


def cmd_check(args):
    from pathlib import Path

    from .check import check, read_metrics

    path = Path(args.reference)
    if not path.is_file():
        raise UserError(f"reference {args.reference!r} does not exist: build one with 'elt reference' or fix the path")
    try:
        reference = json.loads(path.read_text())
    except ValueError:
        raise UserError(f"reference {args.reference!r} is not valid JSON: rebuild it with 'elt reference'") from None
    table, passed = check(reference, read_metrics(args.metrics))
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    bad = table[table["status"] != "ok"] if len(table) else table
    print(f"{'PASSED' if passed else 'FAILED'}: {len(table) - len(bad)} ok, {len(bad)} regressed or missing, against {args.reference}")
    if not passed:
        sys.exit(1)


def cmd_reference(args):
    from .check import build_reference
    from .provenance import provenance, write_json

    sources = {"metrics_files": [str(m) for m in args.metrics]}  # which runs the tolerances were measured on
    write_json(args.out, build_reference(args.metrics, args.baseline_seed, args.k, args.profile, {**provenance(), **sources}))
    print(args.out)


def cmd_tokenizer(args):
    from pathlib import Path

    import yaml

    from .tokenizer import tokenizer_step

    path = Path(args.config)
    if not path.is_file():
        raise UserError(f"config file {args.config!r} does not exist: pass a YAML file with data: and tokenizer: sections")
    settings = yaml.safe_load(path.read_text()) or {}
    unknown = sorted(set(settings) - {"data", "tokenizer"})
    if unknown or "data" not in settings:
        raise UserError(f"config file {args.config!r} needs a data: section and optionally tokenizer:, not {unknown or 'nothing'}")
    out = Path(args.out)
    summary = tokenizer_step(settings["data"], settings.get("tokenizer") or {}, out / "tokenizer.pt", out / "tokenizer.json",
                             out / "train_tokens.npz")
    print(json.dumps({"held_out_error": summary["held_out_error"], "token_grid": summary["token_grid"], "out": str(out)}))


def cmd_export_png(args):
    from .sample import export_png

    print(f"{export_png(args.samples, args.out)} PNG files in {args.out}")


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line that points at --help."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="elt", description="Elastic Looped Transformers: train, sample and audit looped generators.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    p = sub.add_parser("train", help="train one run; resumes from DIR/checkpoint.pt if present")
    p.add_argument("--config", required=True, help="run config (YAML or JSON; see config/runs/*.yaml)")
    p.add_argument("--out", required=True, help="run directory: checkpoint.pt and train.json are written here")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("sample", help="sample a checkpoint at one or more loop counts")
    p.add_argument("--checkpoint", required=True, help="checkpoint.pt written by 'elt train'")
    p.add_argument("--loops", required=True, type=parse_loops, help="loop counts: 4, 1,2,4 or 1-6 (any L >= 1, beyond the trained L too)")
    p.add_argument("--num", type=int, default=100, help="samples per loop count, labels cycling through the classes (default 100)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed, the same for every loop count (default 0)")
    p.add_argument("--out", required=True, help="output .npz; with several loop counts put {loops} in the name")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("describe", help="print parameters and FLOPs per loop count as JSON, one object per config")
    p.add_argument("--config", required=True, nargs="+", help="one or more run configs")
    p.add_argument("--loops", type=parse_loops, help="loop counts to report (default 1..L_max of each run)")
    p.set_defaults(func=cmd_describe)
    p = sub.add_parser("check", help="compare a metrics.csv with a committed reference; exit 1 on regression")
    p.add_argument("--reference", required=True, help="reference JSON, e.g. results/reference/default.json")
    p.add_argument("metrics", help="metrics.csv written by the pipeline")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("reference", help="build a regression reference from multi-seed metrics (tolerance = k x seed std)")
    p.add_argument("--metrics", required=True, nargs="+", help="metrics.csv files covering two or more training seeds")
    p.add_argument("--baseline-seed", type=int, default=0, help="seed whose values become the reference (default 0)")
    p.add_argument("--k", type=float, default=3.0, help="tolerance in seed standard deviations (default 3)")
    p.add_argument("--profile", default="default", help="profile name recorded in the file")
    p.add_argument("--out", required=True, help="output JSON, e.g. results/reference/default.json")
    p.set_defaults(func=cmd_reference)

    p = sub.add_parser("tokenizer", help="train a 3D VQ tokenizer on a dataset and pre-tokenize its training split")
    p.add_argument("--config", required=True, help="YAML with data: (as in a run config) and tokenizer: (elt.tokenizer.TokenizerConfig)")
    p.add_argument("--out", required=True, help="folder for tokenizer.pt, tokenizer.json (held-out error) and train_tokens.npz; "
                   "runs use them as codec.tokenizer and codec.tokens")
    p.set_defaults(func=cmd_tokenizer)

    p = sub.add_parser("export-png", help="write the samples of an .npz file as PNGs (video: one strip per clip)")
    p.add_argument("samples", help=".npz written by 'elt sample' or the pipeline (work/<profile>/samples/...)")
    p.add_argument("--out", required=True, help="folder for the PNG files (named <index>_class<label>.png)")
    p.set_defaults(func=cmd_export_png)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except UserError as err:
        print(f"elt {args.command}: error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(f"elt {args.command}: interrupted; rerun the same command to resume", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
