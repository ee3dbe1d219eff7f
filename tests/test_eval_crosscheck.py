"""Cross-check of the constituency scorers against an independent implementation, PYEVALB.

PYEVALB (LGPL, a test-only dependency in the dev extra) counts labeled brackets (every non-POS node,
root included, matched as sets). The trees handed to it are prepared here by code independent of
glomtext.evaluation: trees are rewritten so that PYEVALB's counts equal the protocol's, and the
totals over the first 400 WSJ sample sentences must agree exactly.
"""

import random
import re

import pytest
from nltk import Tree

from glomtext.evaluation.baselines import random_tree
from glomtext.evaluation.constituency import ConstituencyScorer, evalb_brackets, prepare_gold, protocol_spans
from glomtext.evaluation.readers import PTBTree, read_ptb
from glomtext.trees import right_branching

import PYEVALB.parser as pyevalb_parser  # noqa: E402  (the dev extra; scripts/install.sh installs it)
import PYEVALB.scorer as pyevalb_scorer  # noqa: E402

N = 400  # covers sentences 319 and 324, two of the 18 with a unary chain at the root
KIM_TAGS = set("CC CD DT EX FW IN JJ JJR JJS LS MD NN NNS NNP NNPS PDT POS PRP PRP$ RB RBR RBS RP SYM TO UH "
               "VB VBD VBG VBN VBP VBZ WDT WP WP$ WRB".split())
COLLINS_DELETED_TAGS = {"-NONE-", ",", ":", "``", "''", "."}


@pytest.fixture(scope="module")
def trees():
    return [t.tree for t in read_ptb("nltk:treebank", max_sentences=N)[0]]


def keep_tags(tree: Tree, keep) -> Tree | None:
    """Copy without the preterminals whose tag fails ``keep`` and without nodes left empty."""
    if isinstance(tree[0], str):
        return tree.copy() if keep(tree.label()) else None
    kids = [k for k in (keep_tags(c, keep) for c in tree) if k is not None]
    return Tree(tree.label(), kids) if kids else None


def relabel(tree: Tree, label) -> Tree:
    if isinstance(tree[0], str):
        return tree
    return Tree(label(tree.label()), [relabel(c, label) for c in tree])


def collapse_unary(tree: Tree) -> Tree:
    """Every nonterminal with one child is replaced by that child (unary chains and one-word phrases go)."""
    if isinstance(tree[0], str):
        return tree
    kids = [collapse_unary(c) for c in tree]
    return kids[0] if len(kids) == 1 else Tree(tree.label(), kids)


def tagged(tree: Tree, tags: list[str]) -> Tree:
    """A predicted tree (words as leaves) with the gold POS tags put back as preterminals."""
    it = iter(tags)

    def walk(node):
        return Tree("X", [walk(c) if isinstance(c, Tree) else Tree(next(it), [c]) for c in node])

    return walk(tree)


def prepare_gold_tree(tree: Tree):
    return prepare_gold(PTBTree(tree, "wsj"))


def pyevalb(gold: Tree, test: Tree) -> tuple[int, int, int]:
    """(matched, gold, test) bracket counts from PYEVALB."""
    g = pyevalb_parser.create_from_bracket_string(gold.pformat(margin=10**9))
    t = pyevalb_parser.create_from_bracket_string(test.pformat(margin=10**9))
    r = pyevalb_scorer.Scorer().score_trees(g, t)
    return r.matched_brackets, r.gold_brackets, r.test_brackets


def collins(tree: Tree) -> Tree:
    """COLLINS.prm preprocessing, written independently: punctuation and empty elements deleted,
    function tags stripped, PRT read as ADVP."""

    def label(text: str) -> str:
        base = re.sub(r"[-=].*", "", text)
        return "ADVP" if base == "PRT" else base

    return relabel(keep_tags(tree, lambda tag: tag not in COLLINS_DELETED_TAGS), label)


def test_kim_protocol_spans_match_pyevalb_per_sentence(trees):
    """Kim protocol: PYEVALB on word-tag-only trees with unary chains and one-word phrases collapsed
    counts the distinct multi-word spans plus the root, which always matches."""
    rng = random.Random(0)
    compared = 0
    for tree in trees:
        gold = prepare_gold_tree(tree)
        words_tree = keep_tags(tree, lambda tag: tag in KIM_TAGS)
        if gold is None:
            assert words_tree is None or len(words_tree.leaves()) < 2
            continue
        g = relabel(collapse_unary(words_tree), lambda _: "X")
        tags = [tag for _, tag in words_tree.pos()]
        for pred in (right_branching(gold.words), random_tree(gold.words, rng)):
            spans = protocol_spans(pred, len(gold.words))
            matched, n_gold, n_test = pyevalb(g, tagged(pred, tags))
            assert (len(spans & gold.spans), len(spans), len(gold.spans)) == (matched - 1, n_test - 1, n_gold - 1), gold.source
            compared += 1
    assert compared == 2 * N


def test_evalb_style_unlabeled_totals_match_pyevalb(trees):
    scorer, totals = ConstituencyScorer(), [0, 0, 0]
    for tree in trees:
        gold = prepare_gold_tree(tree)
        scorer.add(gold, right_branching(gold.words), right_branching(gold.evalb_words))
        g = relabel(collins(tree), lambda _: "X")
        counts = pyevalb(g, tagged(right_branching(gold.evalb_words), [tag for _, tag in g.pos()]))
        totals = [a + b for a, b in zip(totals, counts)]
    assert scorer.evalb == totals


def test_evalb_style_labeled_brackets_match_pyevalb(trees):
    """A labeled 'parse' made from gold by removing NPs directly under NPs and unary chains."""

    def flatten_np(node):
        if isinstance(node[0], str):
            return node
        kids = []
        for c in (flatten_np(c) for c in node):
            kids += list(c) if node.label() == "NP" and c.label() == "NP" and not isinstance(c[0], str) else [c]
        return Tree(node.label(), kids)

    ours, theirs = [0, 0, 0], [0, 0, 0]
    for tree in trees:
        g = collins(tree)
        test = collapse_unary(flatten_np(g))
        _, gold_brackets = evalb_brackets(tree)
        _, test_brackets = evalb_brackets(test)
        counts = (sum((gold_brackets & test_brackets).values()), sum(gold_brackets.values()), sum(test_brackets.values()))
        ours = [a + b for a, b in zip(ours, counts)]
        theirs = [a + b for a, b in zip(theirs, pyevalb(g, test))]
    assert ours == theirs and ours[0] < ours[1]  # the test trees really differ from gold
