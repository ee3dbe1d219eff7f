"""Which neighbour does each word join first? Side accuracy of every read-out (a diagnostic, dev half only).

A word between two neighbours joins one of them first in the gold tree: the one that shares the
smaller gold constituent with it ("the" joins the noun on its right; a verb joins its object, not its
subject). Words whose two neighbours first meet it in the same constituent (inside a flat phrase),
and the two words at the ends, have no side and are left out. A read-out's distances give each word
a side too: the neighbour at the smaller distance (a tie counts half). Side accuracy is the share of
words whose sides agree; 50% is chance, and "always right" is the right-branching tree's score.
Reported over all words and per part-of-speech group (tags by their first two letters: NN holds NN,
NNS, NNP, NNPS), for each level alone and all levels, with cosine distances and (constituent prior)
the neighbour links. `--before VB` splits the words of one group by the group of the word before them
(verbs after a noun, after a modal, ...), `--after VB` by the group of the word after them (verbs before
a determiner, before a pronoun, ...), `--by-tag VB` by their own full tag (VBD, VBZ, VBN, ...). `--pair IN DT`
asks whether adjacent words get their sides together: of the prepositions directly followed by a determiner
(both with a gold side), how many pairs have both on their gold side, only one of them, or neither (a tie is
off its side)? Two groups' side accuracies that add up to about 100% may mean that mostly one of the two is right. With
several models (seeds of one recipe), each read-out also gets an agreement row: the share of words
that every model puts on the same side, and the side accuracy on those words; it tells a systematic
error (all seeds agree, wrongly) from a seed lottery:

    python eval/attachment_study.py --model runs/x --treebank 'nltk:treebank/wsj_00??.mrg' --max-sentences 500
    python eval/attachment_study.py --model runs/x/seed0 runs/x/seed1 runs/x/seed2
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Sequence

from glomtext.evaluation.cli import add_study_arguments, load_study_model, read_study_treebank
from glomtext.evaluation.constituency import prepare_golds

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

    def add(self, groups: Sequence[str | None], gold: Sequence[int], pred: Sequence[float]) -> None:
        """groups: each word's group, or None to leave it out of the groups (it still counts in "all")."""
        for group, g, p in zip(groups, gold, pred):
            if g:
                hit = 0.5 if p == 0 else float(p == g)
                for key in ("all", group) if group else ("all",):
                    self.hits[key] += hit
                    self.total[key] += 1

    def row(self, groups: Sequence[str] = GROUPS) -> dict:
        return {k: round(100 * self.hits[k] / self.total[k], 1) for k in ("all", *groups) if self.total[k]}


class AgreementScore:
    """Over several models: the share of words with a gold side that all models put on one side (no
    tie), and the side accuracy on those words, over all words and per group."""

    def __init__(self):
        self.agreed, self.hits, self.total = Counter(), Counter(), Counter()

    def add(self, groups: Sequence[str | None], gold: Sequence[int], preds: Sequence[Sequence[float]]) -> None:
        for group, g, *votes in zip(groups, gold, *preds):
            if g:
                agreed = votes[0] != 0 and len(set(votes)) == 1
                for key in ("all", group) if group else ("all",):
                    self.total[key] += 1
                    self.agreed[key] += agreed
                    self.hits[key] += agreed and votes[0] == g

    def row(self, groups: Sequence[str] = GROUPS) -> dict:
        keys = [k for k in ("all", *groups) if self.total[k]]
        return {"all agree": {k: round(100 * self.agreed[k] / self.total[k], 1) for k in keys},
                "side accuracy when all agree": {k: round(100 * self.hits[k] / self.agreed[k], 1) for k in keys if self.agreed[k]}}


class PairScore:
    """Adjacent words of two groups, ``first`` then ``second``, both with a gold side: the share of pairs
    with both, only the first, only the second, or neither on their gold side (a tie is off its side)."""

    OUTCOMES = {(True, True): "both", (True, False): "first only", (False, True): "second only", (False, False): "neither"}

    def __init__(self, first: str, second: str):
        self.first, self.second, self.counts = first, second, Counter()

    def add(self, groups: Sequence[str | None], gold: Sequence[int], pred: Sequence[float]) -> None:
        for i in range(len(groups) - 1):
            if (groups[i], groups[i + 1]) == (self.first, self.second) and gold[i] and gold[i + 1]:
                self.counts[self.OUTCOMES[pred[i] == gold[i], pred[i + 1] == gold[i + 1]]] += 1

    def row(self) -> dict:
        n = sum(self.counts.values())
        return {"pairs": n, **{k: round(100 * self.counts[k] / n, 1) for k in self.OUTCOMES.values() if n}}


def word_groups(tags: Sequence[str], before: str | None = None, after: str | None = None,
                by_tag: str | None = None) -> list[str | None]:
    """Each word's group (its tag's first two letters); with ``before``, only the words of that group
    are grouped, by the group of the word before them ("after NN"; the first word: "first"); with
    ``after``, by the group of the word after them ("before DT"; the last word: "last"); with ``by_tag``,
    by their own full tag (VBD, VBZ, ...)."""
    groups = [t[:2] for t in tags]
    if by_tag is not None:
        return [t if g == by_tag else None for t, g in zip(tags, groups)]
    if before is not None:
        return [(f"after {groups[i - 1]}" if i else "first") if g == before else None for i, g in enumerate(groups)]
    if after is not None:
        n = len(groups)
        return [(f"before {groups[i + 1]}" if i + 1 < n else "last") if g == after else None for i, g in enumerate(groups)]
    return groups


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, nargs="+", help="one model, or several (seeds) for agreement rows too")
    add_study_arguments(p)
    split = p.add_mutually_exclusive_group()
    split.add_argument("--before", metavar="GROUP", help="split this group's words by the group of the word before them (e.g. VB)")
    split.add_argument("--after", metavar="GROUP", help="split this group's words by the group of the word after them (e.g. VB)")
    split.add_argument("--by-tag", metavar="GROUP", help="split this group's words by their full tag (e.g. VB: VBD, VBZ, ...)")
    split.add_argument("--pair", nargs=2, metavar=("FIRST", "SECOND"),
                       help="adjacent words of two groups (e.g. IN DT): how often both, one or neither are on their gold side")
    args = p.parse_args(argv)
    chosen = args.before or args.after or args.by_tag
    golds = prepare_golds(*read_study_treebank(p, args))
    groups = [word_groups([t for _, t in g.tree.pos()], args.before, args.after, args.by_tag) for g in golds]
    shown = GROUPS if chosen is None else sorted({x for gs in groups for x in gs if x}, key=lambda x: (x not in ("first", "last"), x))
    if not shown:
        option = "--before" if args.before else "--after" if args.after else "--by-tag"
        p.error(f"{option} {chosen}: no word of that group in {args.treebank} (groups are a tag's first two letters, e.g. VB)")
    sides = [gold_sides(sorted(g.spans), len(g.words)) for g in golds]
    if args.pair:
        found = PairScore(*args.pair)
        for grp, s in zip(groups, sides):
            found.add(grp, s, s)
        if not found.counts:
            p.error(f"--pair {' '.join(args.pair)}: no two adjacent words of those groups with a gold side in {args.treebank}")
    several = len(args.model) > 1
    preds = {}  # read-out name -> one list of per-sentence sides per model
    gloms = [load_study_model(p, args, model) for model in args.model]
    for i, (model, glom) in enumerate(zip(args.model, gloms)):
        states = glom.states([g.words for g in golds])
        baseline = {} if i else {"always right (right-branching)": None}
        for name, options in {**baseline, **glom.readouts()}.items():
            score, model_preds = PairScore(*args.pair) if args.pair else SideScore(), []
            for grp, g, s, gold in zip(groups, sides, states, golds):
                model_preds.append([1] * len(g) if options is None else model_sides(glom.distances(gold.words, s, **options).tolist()))
                score.add(grp, g, model_preds[-1])
            preds.setdefault(name, []).append(model_preds)
            scores = score.row() if args.pair else {"words": score.total["all"], **score.row(shown),
                                                    **({f"n {k}": score.total[k] for k in shown if score.total[k]} if chosen else {})}
            print(json.dumps({**({"model": model} if several else {}), "readout": name, **scores}))
    for name, per_model in preds.items() if several and not args.pair else ():
        if len(per_model) == len(args.model):
            agreement = AgreementScore()
            for grp, g, *votes in zip(groups, sides, *per_model):
                agreement.add(grp, g, votes)
            print(json.dumps({"readout": name, "models": len(args.model), **agreement.row(shown)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
