"""Does a run learn structure as it trains? Tree F1 of every checkpoint of a pretraining run.

Every checkpoint that `glomtext.pretrain` writes is also a model directory, so each one (and the
final model) is scored like `glomtext eval` does, next to the same architecture with fresh weights
(the untrained control) and the fixed baselines. Use the development half only:

    python eval/learning_curve.py --run runs/x --treebank 'nltk:treebank/wsj_00??.mrg' --max-sentences 500

A run with neighbour links is scored as the GPU recipe is (scripts/constituent_gpu.sh) with
`--tree-readout links --link-mean arithmetic --link-choice open`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from glomtext.evaluation.constituency import prepare_golds
from glomtext.evaluation.pipeline import evaluate_constituency
from glomtext.evaluation.cli import add_study_arguments, read_study_treebank
from glomtext.evaluation.systems import GlomText
from glomtext.islands import READOUTS
from glomtext.pretrain import checkpoint_dirs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="a pretraining output folder (its checkpoints/ and final model)")
    add_study_arguments(p, untrained=False)  # every row has the untrained control beside it
    p.add_argument("--tree-levels", type=int, nargs="+", metavar="L", help="as in glomtext eval (default: all levels)")
    p.add_argument("--tree-readout", choices=READOUTS, default="cosine", help="as in glomtext eval (default: cosine)")
    p.add_argument("--output", help="write the rows to this JSON file too")
    args = p.parse_args(argv)
    golds = prepare_golds(*read_study_treebank(p, args))
    run = Path(args.run)
    models = []
    for d in checkpoint_dirs(run):
        if (d / "config.json").is_file():
            models.append((int(d.name.split("_")[1]), d))
        else:
            print(f"skipping {d}: no config.json (written before checkpoints were model directories)", file=sys.stderr)
    summary = run / "train_summary.json"
    if summary.is_file():  # the run finished: its final model, unless a checkpoint holds the same step
        steps = json.loads(summary.read_text())["steps"]
        if not models or models[-1][0] != steps:
            models.append((steps, run))
    if not models:
        p.error(f"--run {run}: no checkpoints and no final model found")
    rows = []
    print("| step | model | sentence F1 | corpus F1 | untrained control | right-branching | random |\n|---|---|---|---|---|---|---|")
    for step, path in models:
        try:
            glom = GlomText(str(path), tree_levels=args.tree_levels, tree_readout=args.tree_readout,
                            link_mean=args.link_mean, link_choice=args.link_choice)
        except ValueError as e:
            p.error(str(e))
        result, _ = evaluate_constituency(golds, glom=glom, progress=False)
        s = result["systems"]
        rows.append({"step": step, "model": str(path), **{name: round(s[name]["sentence_f1"], 1) for name in s},
                     "glomtext_corpus_f1": round(s["glomtext"]["corpus_f1"], 1)})
        r = rows[-1]
        print(f"| {step} | {path.name} | {r['glomtext']} | {r['glomtext_corpus_f1']} | {r['glomtext_untrained']} | "
              f"{r['right_branching']} | {r['random']} |", flush=True)
    if args.output:
        Path(args.output).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
