"""Which read-out of a trained model gives the best trees? (model selection on the dev half only)

For each level alone, and for the mean over all levels, the adjacent-word distance tree is scored
with the Kim et al. protocol; optionally at several iteration counts. For models trained with a
constituent `consensus_prior` the same is done with the model's neighbour links as distances
(1 - link, from the model's `settling.links` on the word states; `glomtext eval --tree-readout links`). `--right-skew B [B ...]` also scores the
cosine read-outs with the right-skew bias of Kim et al. (2020) (a branching-direction prior, for
the separately labelled rows of `glomtext eval --right-skew`). Run on the development half
(wsj_0001-wsj_0099) so that choices never look at the test half:

    python eval/readout_study.py --model runs/x --treebank 'nltk:treebank/wsj_00??.mrg' --max-sentences 500
"""

from __future__ import annotations

import argparse
import json

from glomtext.evaluation.constituency import ConstituencyScorer, prepare_golds
from glomtext.evaluation.readers import read_ptb
from glomtext.evaluation.systems import GlomText
from glomtext.islands import distance_tree


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--treebank", default="nltk:treebank/wsj_00??.mrg")
    p.add_argument("--max-sentences", type=int, default=500)
    p.add_argument("--iterations", type=int, nargs="+", default=[None], help="settling iterations to try (default: the model's)")
    p.add_argument("--right-skew", type=float, nargs="+", default=[], metavar="B", help="right-skew biases to try on the cosine read-outs")
    p.add_argument("--untrained", action="store_true", help="score the untrained control (same config, fresh weights, seed 0) instead")
    args = p.parse_args(argv)
    if any(not b > 0 for b in args.right_skew):
        p.error(f"--right-skew: biases must be positive, got {args.right_skew}")
    trees, log = read_ptb(args.treebank, max_sentences=args.max_sentences)
    golds = prepare_golds(trees, log)
    rows = []
    for T in args.iterations:
        glom = GlomText(args.model, iterations=T)
        glom = glom.untrained(0) if args.untrained else glom
        states = dict(zip([tuple(g.words) for g in golds], glom.states([g.words for g in golds])))
        every = list(range(glom.n_levels))
        levels = {"all levels": every, **{f"level {l}": [l] for l in every}}
        readouts = {f"cosine, {name}{f', right-skew {b:g}' if b else ''}":
                    lambda words, s, lv=lv, b=b: distance_tree(words, s, levels=lv, right_skew=b)
                    for b in [0.0, *args.right_skew] for name, lv in levels.items()}
        if glom.model.config.consensus_prior != "none":
            settling = glom.model.settling
            readouts |= {f"links, {name}": lambda words, s, lv=lv: distance_tree(words, s, levels=lv, readout="links", settling=settling)
                         for name, lv in levels.items()}
        for name, tree_of in readouts.items():
            scorer = ConstituencyScorer()
            for g in golds:
                scorer.add(g, tree_of(g.words, states[tuple(g.words)]))
            r = scorer.result()
            rows.append({"iterations": T or glom.model.config.num_iterations, "readout": name,
                         "sentence_f1": round(r["sentence_f1"], 1), "corpus_f1": round(r["corpus_f1"], 1)})
            print(json.dumps(rows[-1]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
