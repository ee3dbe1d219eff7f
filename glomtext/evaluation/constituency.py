"""Constituency scores: predicted trees and islands against treebank constituents.

Two protocols, each stated in full in the report (``PROTOCOL`` and ``EVALB_PROTOCOL``):

* the unsupervised-parsing protocol of Kim et al. (2019, compound PCFG): word tokens only,
  unlabeled distinct spans without single words and the whole sentence, sentence F1 and corpus F1;
* an EVALB-style score with the conventions of EVALB's ``COLLINS.prm``.

Spans are half-open word-index pairs ``(start, end)``; a predicted tree is an ``nltk.Tree`` whose
leaves are the words (as built by :mod:`glomtext.trees`).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

from nltk import Tree

from glomtext.evaluation.readers import PTBTree, ReadLog
from glomtext.trees import tree_spans

# The 36 PTB part-of-speech tags of words (Kim et al. 2019, after PRPN's data_ptb.py): punctuation,
# currency symbols ($, #) and empty elements (-NONE-) are not among them.
WORD_TAGS = frozenset(
    "CC CD DT EX FW IN JJ JJR JJS LS MD NN NNS NNP NNPS PDT POS PRP PRP$ RB RBR RBS RP SYM TO UH "
    "VB VBD VBG VBN VBP VBZ WDT WP WP$ WRB".split()
)

PROTOCOL = (
    "Kim et al. (2019) unsupervised-parsing protocol. Words: the tokens whose PTB POS tag is one of "
    "the 36 word tags (punctuation, currency symbols and empty elements/traces removed; constituents "
    "left empty removed). Gold: the unlabeled spans of all constituents, duplicates from unary chains "
    "counted once; single-word spans and the whole-sentence span are dropped from gold and prediction. "
    "Sentences of at least 2 words. Sentence F1: the mean of per-sentence F1; a sentence with no gold "
    "span scores 100 if the prediction has none either (every 2-word sentence) and 0 otherwise, as in "
    "Kim et al.'s compare_trees.py. Corpus F1: micro-averaged over all spans. Systems parse exactly "
    "these words. (Kim et al.'s script removes only the last-listed whole-sentence span, so a unary "
    "chain at the root keeps one copy in their gold; here every whole-sentence span is dropped.)"
)

EVALB_PROTOCOL = (
    "EVALB-style score with COLLINS.prm conventions: words are all tokens except those tagged "
    "-NONE- , : `` '' . ; brackets are all nonterminal nodes (root, unary and single-word nodes "
    "included; TOP deleted; function tags and indices stripped; PRT = ADVP), matched as a multiset. "
    "Systems parse these words into unlabeled binary trees, so only the unlabeled score is reported."
)

COLLINS_DELETE = frozenset({"TOP", "-NONE-", ",", ":", "``", "''", "."})
COLLINS_EQUIVALENT = {"PRT": "ADVP"}

LENGTH_BINS = ((2, 5), (6, 10), (11, 15), (16, 20), (21, 25), (26, 30), (31, 40), (41, 10**9))

Span = tuple[int, int]


def strip_label(label: str) -> str:
    """Category without function tags or indices: NP-SBJ-1 -> NP, NP=2 -> NP; -NONE- unchanged."""
    if label.startswith("-"):
        return label
    return re.split(r"[-=]", label)[0] or label


def is_preterminal(node) -> bool:
    return isinstance(node, Tree) and len(node) == 1 and isinstance(node[0], str)


def kim_filter(tree: Tree) -> Tree | None:
    """A copy keeping only words with one of the 36 word tags; emptied constituents are removed and
    labels stripped of function tags. None when no word is left."""
    if is_preterminal(tree):
        return tree.copy() if tree.label() in WORD_TAGS else None
    children = [c for c in (kim_filter(child) for child in tree) if c is not None]
    return Tree(strip_label(tree.label()), children) if children else None


def labeled_spans(tree: Tree) -> list[tuple[str, int, int]]:
    """(label, start, end) of every nonterminal node that is not a POS tag, in pre-order."""
    out: list[tuple[str, int, int]] = []

    def walk(node, start: int) -> int:
        if is_preterminal(node):
            return start + 1
        index = len(out)
        out.append(("", 0, 0))  # placeholder, filled once the end is known
        end = start
        for child in node:
            end = walk(child, end)
        out[index] = (node.label(), start, end)
        return end

    walk(tree, 0)
    return out


def evalb_brackets(tree: Tree, labeled: bool = True) -> tuple[list[str], Counter]:
    """Words and bracket multiset of a gold tree under COLLINS.prm conventions.

    Preterminals tagged in COLLINS_DELETE are removed with their word; nonterminals labelled TOP
    lose their bracket but keep their children; nodes left without words disappear. With
    ``labeled=False`` every bracket gets the label "".
    """
    words: list[str] = []
    brackets: Counter = Counter()

    def walk(node) -> None:
        if is_preterminal(node):
            if node.label() not in COLLINS_DELETE:
                words.append(node[0])
            return
        start = len(words)
        for child in node:
            walk(child)
        label = strip_label(node.label())
        if len(words) > start and label not in COLLINS_DELETE:
            label = COLLINS_EQUIVALENT.get(label, label) if labeled else ""
            brackets[(label, start, len(words))] += 1

    walk(tree)
    return words, brackets


def tree_brackets(tree: Tree) -> Counter:
    """Unlabeled bracket multiset of a predicted tree: one per internal node (leaves are words)."""
    return Counter(("", i, j) for i, j in tree_spans(tree))


def protocol_spans(tree: Tree, n_words: int) -> frozenset[Span]:
    """Kim-protocol spans of a predicted tree: distinct, at least 2 words, not the whole sentence."""
    if len(tree.leaves()) != n_words:
        raise ValueError(f"predicted tree has {len(tree.leaves())} leaves for {n_words} words")
    return frozenset((i, j) for i, j in tree_spans(tree) if j - i >= 2 and (i, j) != (0, n_words))


@dataclass
class GoldSentence:
    """A treebank sentence prepared for both protocols."""

    source: str
    tree: Tree  # the Kim-filtered tree (POS tags kept, function tags stripped)
    words: list[str]  # Kim-protocol words
    labeled: frozenset[tuple[str, int, int]]  # Kim-protocol gold constituents with their labels
    evalb_words: list[str]
    evalb_brackets: Counter  # (label, start, end) -> count, COLLINS.prm conventions

    @cached_property
    def spans(self) -> frozenset[Span]:
        return frozenset((i, j) for _, i, j in self.labeled)

    @cached_property
    def evalb_unlabeled(self) -> Counter:
        out: Counter = Counter()
        for (_, i, j), count in self.evalb_brackets.items():
            out[("", i, j)] += count
        return out

    @cached_property
    def constituents(self) -> set[frozenset[int]]:
        """Multi-word constituents as word sets, the whole sentence included (for islands)."""
        return {frozenset(range(i, j)) for i, j in self.spans} | {frozenset(range(len(self.words)))}


def prepare_gold(ptb: PTBTree) -> GoldSentence | None:
    """Both protocols' view of one tree; None if fewer than 2 words survive the Kim filter."""
    filtered = kim_filter(ptb.tree)
    if filtered is None or len(filtered.leaves()) < 2:
        return None
    n = len(filtered.leaves())
    labeled = frozenset((lab, i, j) for lab, i, j in labeled_spans(filtered) if j - i >= 2 and (i, j) != (0, n))
    evalb_words, brackets = evalb_brackets(ptb.tree)
    return GoldSentence(ptb.source, filtered, filtered.leaves(), labeled, evalb_words, brackets)


def prepare_golds(trees: Sequence[PTBTree], log: ReadLog) -> list[GoldSentence]:
    """Gold sentences of a treebank; the too-short ones are counted in ``log`` under their reason."""
    golds = []
    for ptb in trees:
        gold = prepare_gold(ptb)
        if gold is None:
            log.skip(ptb.source, "fewer than 2 words without punctuation and empty elements")
        else:
            golds.append(gold)
    return golds


def sentence_f1(pred: frozenset[Span], gold: frozenset[Span]) -> float:
    """Per-sentence F1 (0..1) with Kim et al.'s convention for sentences without gold spans."""
    if not gold:
        return 1.0 if not pred else 0.0
    tp = len(pred & gold)
    if tp == 0:
        return 0.0
    p, r = tp / len(pred), tp / len(gold)
    return 2 * p * r / (p + r)


def prf(tp: int, n_pred: int, n_gold: int) -> dict:
    """Precision, recall and F1 in percent from counts."""
    p = 100.0 * tp / n_pred if n_pred else 0.0
    r = 100.0 * tp / n_gold if n_gold else 0.0
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0}


def bin_name(lo: int, hi: int) -> str:
    return f"{lo}-{hi}" if hi < 10**9 else f"{lo}+"


class ConstituencyScorer:
    """Accumulates one system's scores over sentences: call ``add`` per sentence, then ``result``."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, float, int, int, int]] = []  # (length, f1, tp, n_pred, n_gold)
        self.label_total: Counter = Counter()
        self.label_hit: Counter = Counter()
        self.evalb = [0, 0, 0]  # matched, gold, test brackets (unlabeled)

    def add(self, gold: GoldSentence, tree: Tree, evalb_tree: Tree | None = None) -> None:
        """Score ``tree`` (over ``gold.words``) and, if given, ``evalb_tree`` (over ``gold.evalb_words``)."""
        pred = protocol_spans(tree, len(gold.words))
        spans = gold.spans
        self.rows.append((len(gold.words), sentence_f1(pred, spans), len(pred & spans), len(pred), len(spans)))
        for label, i, j in gold.labeled:
            self.label_total[label] += 1
            self.label_hit[label] += (i, j) in pred
        if evalb_tree is not None:
            if len(evalb_tree.leaves()) != len(gold.evalb_words):
                raise ValueError(f"{gold.source}: EVALB tree has {len(evalb_tree.leaves())} leaves for {len(gold.evalb_words)} words")
            g, t = gold.evalb_unlabeled, tree_brackets(evalb_tree)
            self.evalb[0] += sum((g & t).values())
            self.evalb[1] += sum(g.values())
            self.evalb[2] += sum(t.values())

    @staticmethod
    def _summary(rows) -> dict:
        if not rows:
            return {"n_sentences": 0, "sentence_f1": 0.0, "corpus_f1": 0.0}
        tp, n_pred, n_gold = (sum(r[k] for r in rows) for k in (2, 3, 4))
        corpus = prf(tp, n_pred, n_gold)
        return {
            "n_sentences": len(rows),
            "sentence_f1": 100.0 * sum(r[1] for r in rows) / len(rows),
            "corpus_f1": corpus["f1"],
            "corpus_precision": corpus["precision"],
            "corpus_recall": corpus["recall"],
        }

    def result(self) -> dict:
        out = self._summary(self.rows)
        le10 = self._summary([r for r in self.rows if r[0] <= 10])
        out["sentence_f1_le10"], out["corpus_f1_le10"], out["n_sentences_le10"] = le10["sentence_f1"], le10["corpus_f1"], le10["n_sentences"]
        out["f1_by_length"] = {}
        for lo, hi in LENGTH_BINS:
            rows = [r for r in self.rows if lo <= r[0] <= hi]
            if rows:
                out["f1_by_length"][bin_name(lo, hi)] = {"n": len(rows), "sentence_f1": self._summary(rows)["sentence_f1"]}
        out["label_recall"] = {
            lab: {"n": n, "recall": 100.0 * self.label_hit[lab] / n} for lab, n in self.label_total.most_common()
        }
        if self.evalb[1]:
            out["evalb_unlabeled"] = prf(self.evalb[0], self.evalb[2], self.evalb[1])
        return out


def island_stats(islands: Sequence[Sequence[Sequence]], golds: Sequence[GoldSentence]) -> list[dict]:
    """Per level: islands of 2+ words against gold constituents of 2+ words (whole sentence included).

    ``islands[s][level]`` lists the islands (objects with ``.members``) of sentence ``s`` at a level.
    precision: share of islands that are exactly a gold constituent; recall: share of gold
    constituents that are exactly an island; sizes compare islands with constituents.
    """
    n_levels = max((len(s) for s in islands), default=0)
    n_gold = sum(len(g.constituents) for g in golds)
    gold_sizes = [len(c) for g in golds for c in g.constituents]
    out = []
    for level in range(n_levels):
        sizes, found, discontinuous = [], 0, 0
        for sentence, gold in zip(islands, golds):
            sets = {frozenset(i.members) for i in sentence[level] if len(i.members) >= 2}
            sizes += [len(s) for s in sets]
            found += len(sets & gold.constituents)
            discontinuous += sum(max(s) - min(s) + 1 != len(s) for s in sets)
        out.append({
            "level": level,
            "n_islands": len(sizes),
            "precision": 100.0 * found / len(sizes) if sizes else 0.0,
            "recall": 100.0 * found / n_gold if n_gold else 0.0,
            "mean_size": sum(sizes) / len(sizes) if sizes else 0.0,
            "discontinuous": 100.0 * discontinuous / len(sizes) if sizes else 0.0,
            "gold_mean_size": sum(gold_sizes) / len(gold_sizes) if gold_sizes else 0.0,
        })
    return out
