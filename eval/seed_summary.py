"""Mean and standard deviation of sentence F1 over the runs of one recipe, per WSJ half.

    python eval/seed_summary.py --out runs/constituent_learned --halves dev test --runs seed0 seed1 seed2

Reads OUT/eval_{half}_{run}/results.json (written by `glomtext eval --output ...`) and prints one line per
system (the model, its untrained control, their right-skew rows when scored, and the baselines).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

SYSTEMS = ("glomtext", "glomtext_untrained", "glomtext_right_skew", "glomtext_untrained_right_skew",
           "right_branching", "balanced", "random")


def summarize(out: Path, half: str, runs: list[str]) -> list[str]:
    results = []
    for run in runs:
        path = out / f"eval_{half}_{run}" / "results.json"
        if not path.is_file():
            raise SystemExit(f"seed_summary: {path} not found (score run {run!r} on the {half} half first)")
        results.append(json.loads(path.read_text())["constituency"])
    lines = [f"{half} half, {results[0]['n_sentences']} sentences, runs {' '.join(runs)}:"]
    for name in SYSTEMS:
        if name not in results[0]["systems"]:
            continue
        f1 = [r["systems"][name]["sentence_f1"] for r in results]
        sd = statistics.stdev(f1) if len(f1) > 1 else 0.0
        lines.append(f"  {name:29s} sentence F1 {statistics.mean(f1):5.1f} +- {sd:.1f}   ({', '.join(f'{x:.1f}' for x in f1)})")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="folder holding eval_{half}_{run}/results.json")
    p.add_argument("--halves", nargs="+", choices=("dev", "test"), default=["dev", "test"])
    p.add_argument("--runs", nargs="+", required=True, help="run names, e.g. seed0 seed1 seed2")
    args = p.parse_args(argv)
    for half in args.halves:
        print("\n".join(summarize(args.out, half, args.runs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
