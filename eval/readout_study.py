"""Which read-out of a trained model gives the best trees? (model selection on the dev half only)

For each level alone, and for the mean over all levels, the adjacent-word distance tree is scored
with the Kim et al. protocol; optionally at several iteration counts. Run on the development half
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
    args = p.parse_args(argv)
    trees, log = read_ptb(args.treebank, max_sentences=args.max_sentences)
    golds = prepare_golds(trees, log)
    rows = []
    for T in args.iterations:
        glom = GlomText(args.model, iterations=T)
        states = dict(zip([tuple(g.words) for g in golds], glom.states([g.words for g in golds])))
        readouts = {"all levels": None, **{f"level {l}": [l] for l in range(glom.n_levels)}}
        for name, levels in readouts.items():
            scorer = ConstituencyScorer()
            for g in golds:
                scorer.add(g, distance_tree(g.words, states[tuple(g.words)], levels=levels))
            r = scorer.result()
            rows.append({"iterations": T or glom.model.config.num_iterations, "readout": name,
                         "sentence_f1": round(r["sentence_f1"], 1), "corpus_f1": round(r["corpus_f1"], 1)})
            print(json.dumps(rows[-1]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
