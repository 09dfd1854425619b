"""results/mutants.md from a mutmut run (benchmarks/mutants.sh): per function, how many mutants the unit
tests killed; each survivor's diff with the reason it may survive, from benchmarks/mutants_explained.yaml.
Exits 1 when a survivor (or a mutant no test reached) has no reason: kill it with a test, or explain it.

usage: python benchmarks/mutants_report.py GLOB [GLOB ...]   (the mutant names mutants.sh ran)
"""

from __future__ import annotations

import fnmatch
import json
import re
import subprocess
import sys
from collections import Counter, defaultdict
from importlib.metadata import version
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
STATUS = {
    1: "killed",
    3: "killed",
    0: "survived",
    5: "no tests",
    33: "no tests",
    36: "timeout",
    24: "timeout",
    -24: "timeout",
    152: "timeout",
    255: "timeout",
    None: "not checked",
}
NEEDS_REASON = ("survived", "no tests", "not checked", "other")


def results(globs: list[str]) -> dict[str, str]:
    """{mutant name: status} of the mutants the globs select, from mutmut's state files."""
    found = {}
    for meta in sorted((ROOT / "mutants").rglob("*.py.meta")):
        for name, code in json.loads(meta.read_text())["exit_code_by_key"].items():
            if any(fnmatch.fnmatchcase(name, g) for g in globs):
                found[name] = STATUS.get(code, "other")
    return found


def diff(name: str) -> str:
    shown = subprocess.run(
        [sys.executable, "-m", "mutmut", "show", name], cwd=ROOT, capture_output=True, text=True
    ).stdout
    return "\n".join(
        line for line in shown.splitlines() if line.startswith(("-", "+")) and not line.startswith(("---", "+++"))
    )


def function_of(name: str) -> str:
    return re.sub(r"__mutmut_\d+$", "", name).replace("xǁ", "").replace("ǁ", ".").replace(".x_", ".")


def main(globs: list[str]) -> int:
    status = results(globs)
    if not status:
        print("no mutants found: run benchmarks/mutants.sh first", file=sys.stderr)
        return 2
    explained = yaml.safe_load((ROOT / "benchmarks/mutants_explained.yaml").read_text()) or {}
    per_function: dict[str, Counter] = defaultdict(Counter)
    for name, s in status.items():
        per_function[function_of(name)][s] += 1
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    total = Counter(status.values())
    lines = [
        "# Mutation testing of the method and resume code",
        "",
        f"`make mutants` (benchmarks/mutants.sh) at commit {commit}, mutmut {version('mutmut')}: each mutant is one "
        "small "
        "change to one function (an operator, a constant, a removed argument...), run against the unit tests that "
        "reach "
        "that function (`[tool.mutmut]` in pyproject.toml). A survivor is a change no test noticed; each one below is "
        "explained (an equivalent mutant, or a difference no observable behaviour depends on) in "
        "benchmarks/mutants_explained.yaml, or the report fails.",
        "",
        f"Mutants: {len(status)}; " + ", ".join(f"{k} {v}" for k, v in sorted(total.items())),
        "",
        "| function | mutants | killed | survived | other |",
        "|---|---|---|---|---|",
    ]
    for function, counts in sorted(per_function.items()):
        other = sum(v for k, v in counts.items() if k not in ("killed", "survived"))
        lines.append(
            f"| {function} | {sum(counts.values())} | {counts['killed']} | {counts['survived']} | {other or ''} |"
        )
    lines += ["", "## Survivors", ""]
    unexplained = []
    for name, s in sorted(
        status.items(), key=lambda kv: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", kv[0])]
    ):
        if s not in NEEDS_REASON:
            continue
        reason = explained.get(name)
        if not reason:
            unexplained.append(name)
        lines += [
            f"### {name} ({s})",
            "",
            "```diff",
            diff(name),
            "```",
            "",
            f"Why it may survive: {reason or '**UNEXPLAINED**'}",
            "",
        ]
    (ROOT / "results/mutants.md").write_text("\n".join(lines))
    print(
        f"results/mutants.md: {len(status)} mutants, "
        + ", ".join(f"{k} {v}" for k, v in sorted(total.items()))
        + f"; {len(unexplained)} unexplained"
    )
    for name in unexplained:
        print(f"unexplained: {name}", file=sys.stderr)
    return 1 if unexplained else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
