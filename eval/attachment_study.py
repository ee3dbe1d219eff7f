"""Which neighbour does each word join first? Side accuracy of every read-out (a diagnostic, dev half only).

A word between two neighbours joins one of them first in the gold tree: the one that shares the
smaller gold constituent with it ("the" joins the noun on its right; a verb joins its object, not its
subject). Words whose two neighbours first meet it in the same constituent (inside a flat phrase),
and the two words at the ends, have no side and are left out. A read-out's distances give each word
a side too: the neighbour at the smaller distance (a tie counts half). Side accuracy is the share of
words whose sides agree; 50% is chance, and "always right" is the right-branching tree's score.
Reported over all words and per part-of-speech group (tags by their first two letters: NN holds NN,
NNS, NNP, NNPS), for each level alone and all levels, with cosine distances and (constituent prior)
the neighbour links:

    python eval/attachment_study.py --model runs/x --treebank 'nltk:treebank/wsj_00??.mrg' --max-sentences 500
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Sequence

from glomtext.evaluation.constituency import prepare_golds
from glomtext.evaluation.readers import read_ptb
from glomtext.evaluation.systems import GlomText
from glomtext.islands import adjacent_distances

GROUPS = ("DT", "IN", "TO", "MD", "CC", "PR", "JJ", "NN", "VB", "RB", "CD")


def gold_sides(spans: Sequence[tuple[int, int]], n: int) -> list[int]:
    """For each word 0..n-1: -1 if it joins its left neighbour first, +1 its right, 0 no side.

    spans: gold constituents as [start, end) word spans (the whole sentence is added).
    """
    spans = [*spans, (0, n)]

    def joined(i: int) -> int:  # size of the smallest constituent holding words i and i+1
        return min(b - a for a, b in spans if a <= i and i + 1 < b)

    sides = [0] * n
    for i in range(1, n - 1):
        left, right = joined(i - 1), joined(i)
        sides[i] = -1 if left < right else 1 if right < left else 0
    return sides


def model_sides(distances: Sequence[float]) -> list[float]:
    """For each word: -1 if its left gap is the smaller distance, +1 its right, 0 a tie or an end word."""
    d = list(distances)
    return [0] + [(-1 if d[i - 1] < d[i] else 1 if d[i] < d[i - 1] else 0) for i in range(1, len(d))] + [0]


class SideScore:
    """Side accuracy over all words with a gold side and per part-of-speech group."""

    def __init__(self):
        self.hits, self.total = Counter(), Counter()

    def add(self, tags: Sequence[str], gold: Sequence[int], pred: Sequence[float]) -> None:
        for tag, g, p in zip(tags, gold, pred):
            if g:
                hit = 0.5 if p == 0 else float(p == g)
                for key in ("all", tag[:2]):
                    self.hits[key] += hit
                    self.total[key] += 1

    def row(self) -> dict:
        return {k: round(100 * self.hits[k] / self.total[k], 1) for k in ("all", *GROUPS) if self.total[k]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--treebank", default="nltk:treebank/wsj_00??.mrg")
    p.add_argument("--max-sentences", type=int, default=500)
    p.add_argument("--untrained", action="store_true", help="score the untrained control (same config, fresh weights, seed 0) instead")
    args = p.parse_args(argv)
    golds = prepare_golds(*read_ptb(args.treebank, max_sentences=args.max_sentences))
    tags = [[t for _, t in g.tree.pos()] for g in golds]
    sides = [gold_sides(sorted(g.spans), len(g.words)) for g in golds]
    glom = GlomText(args.model)
    glom = glom.untrained(0) if args.untrained else glom
    states = glom.states([g.words for g in golds])
    readouts = {"always right (right-branching)": None, **glom.readouts()}
    for name, options in readouts.items():
        score = SideScore()
        for t, g, s in zip(tags, sides, states):
            score.add(t, g, [1] * len(g) if options is None else model_sides(adjacent_distances(s, **options).tolist()))
        print(json.dumps({"readout": name, "words": score.total["all"], **score.row()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
