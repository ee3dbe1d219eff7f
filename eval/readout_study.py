"""Which read-out of a trained model gives the best trees? (model selection on the dev half only)

For each level alone, and for the mean over all levels, the adjacent-word distance tree is scored
with the Kim et al. protocol; optionally at several iteration counts. For models trained with a
constituent `consensus_prior` the same is done with the model's neighbour links as distances
(1 - link, `glomtext.islands.word_links`: from the word states, or for `constituent_front_end` from the word pieces;
`glomtext eval --tree-readout links`), and over all levels with Tree Transformer's top-down parse of the links
(`links_top_down`) and their constituent prior merged bottom-up (`links_average`). `--right-skew B [B ...]` also scores every
read-out with the right-skew bias of Kim et al. (2020) (a branching-direction prior, for
the separately labelled rows of `glomtext eval --right-skew`). `--with-punctuation` is a diagnostic,
not the protocol: the model reads each sentence with its punctuation tokens, and the distance between
two adjacent protocol words is the largest distance on the way between them. Run on the development
half (wsj_0001-wsj_0099) so that choices never look at the test half:

    python eval/readout_study.py --model runs/x --treebank 'nltk:treebank/wsj_00??.mrg' --max-sentences 500
"""

from __future__ import annotations

import argparse
import json

from glomtext.evaluation.cli import add_study_arguments, load_study_model, read_study_treebank
from glomtext.evaluation.constituency import WORD_TAGS, ConstituencyScorer, prepare_gold
from glomtext.trees import right_skewed, tree_from_distances


def model_input(ptb, gold, with_punctuation: bool) -> tuple[tuple[str, ...], list[int]]:
    """The words the model reads, and the positions of the protocol's words among them."""
    if not with_punctuation:
        return tuple(gold.words), list(range(len(gold.words)))
    tokens = [(w, tag) for w, tag in ptb.tree.pos() if tag != "-NONE-"]
    words = [i for i, (_, tag) in enumerate(tokens) if tag in WORD_TAGS]
    assert [tokens[i][0] for i in words] == list(gold.words)
    return tuple(w for w, _ in tokens), words


def tree(gold, words: list[int], distances, right_skew: float):
    """The protocol words' tree; the distance between two of them is the largest one on the way."""
    d = [float(distances[a:b].max()) for a, b in zip(words[:-1], words[1:])]
    return tree_from_distances(gold.words, right_skewed(d, right_skew) if right_skew else d)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--iterations", type=int, nargs="+", default=[None], help="settling iterations to try (default: the model's)")
    p.add_argument("--right-skew", type=float, nargs="+", default=[], metavar="B", help="right-skew biases to try on every read-out")
    add_study_arguments(p)
    p.add_argument("--with-punctuation", action="store_true", help="diagnostic: the model also reads the punctuation tokens")
    args = p.parse_args(argv)
    if any(not b > 0 for b in args.right_skew):
        p.error(f"--right-skew: biases must be positive, got {args.right_skew}")
    trees, _ = read_study_treebank(p, args)
    golds = [(t, g) for t in trees if (g := prepare_gold(t)) is not None]
    inputs = [model_input(t, g, args.with_punctuation) for t, g in golds]
    rows = []
    for T in args.iterations:
        glom = load_study_model(p, args, args.model, iterations=T)
        states = glom.states([list(words) for words, _ in inputs])
        for name, options in glom.readouts().items():
            distances = [glom.distances(words, s, **options) for (words, _), s in zip(inputs, states)]
            for b in [0.0, *args.right_skew]:
                scorer = ConstituencyScorer()
                for (_, g), (_, words), d in zip(golds, inputs, distances):
                    scorer.add(g, tree(g, words, d, b))
                r = scorer.result()
                rows.append({"iterations": T or glom.model.config.num_iterations, "readout": name + (f", right-skew {b:g}" if b else ""),
                             "sentence_f1": round(r["sentence_f1"], 1), "corpus_f1": round(r["corpus_f1"], 1)})
                print(json.dumps(rows[-1]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
