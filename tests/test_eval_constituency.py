"""Constituency scores against hand-computed values (Kim et al. 2019 protocol and EVALB-style)."""

from collections import Counter

import pytest
import torch
from nltk import Tree

from glomtext.evaluation.constituency import (
    ConstituencyScorer,
    evalb_brackets,
    island_stats,
    prepare_gold,
    prepare_golds,
    protocol_spans,
    sentence_f1,
    strip_label,
)
from glomtext.evaluation.readers import PTBTree, ReadLog, read_ptb
from glomtext.islands import Island
from glomtext.trees import left_branching, merge_distances, right_branching, right_skewed, to_ptb, tree_from_distances

CAT = "(S (NP-SBJ (DT The) (NN cat)) (, ,) (VP (VBD sat) (PP-LOC (IN on) (NP (DT the) (NN mat)))) (. .))"
# $ and the empty elements go; NP($ 5 *U*) shrinks to one word; S and VP over "to fix" are a unary chain
FIX = "(S (NP-SBJ-1 (PRP It)) (VP (VBD cost) (NP ($ $) (CD 5) (-NONE- *U*)) (S (NP-SBJ (-NONE- *-1)) (VP (TO to) (VP (VB fix))))) (. .))"
LEFT = "(S (NP (NNP John)) (VP (VBD left)) (. .))"  # two words: no gold span survives
DOG = "(NP (DT the) (JJ big) (NN dog))"  # flat: no gold span survives, a binary prediction has one


def gold(text: str):
    return prepare_gold(PTBTree(Tree.fromstring(text), "test:1"))


def test_labels_lose_function_tags_and_indices():
    assert [strip_label(x) for x in ("NP-SBJ-1", "NP=2", "PP-LOC-CLR", "-NONE-", "S")] == ["NP", "NP", "PP", "-NONE-", "S"]


def test_punctuation_is_removed_and_trivial_spans_dropped():
    g = gold(CAT)
    assert g.words == ["The", "cat", "sat", "on", "the", "mat"]
    assert g.spans == {(0, 2), (2, 6), (3, 6), (4, 6)}  # no (0, 6), no single words
    assert g.labeled == {("NP", 0, 2), ("VP", 2, 6), ("PP", 3, 6), ("NP", 4, 6)}


def test_empty_elements_currency_and_duplicate_spans():
    g = gold(FIX)
    assert g.words == ["It", "cost", "5", "to", "fix"]
    assert g.spans == {(1, 5), (3, 5)}  # S and VP over "to fix" count once
    assert g.labeled == {("VP", 1, 5), ("S", 3, 5), ("VP", 3, 5)}
    assert g.evalb_words == ["It", "cost", "$", "5", "to", "fix"]
    assert g.evalb_brackets == Counter({("S", 0, 6): 1, ("NP", 0, 1): 1, ("VP", 1, 6): 1, ("NP", 2, 4): 1,
                                        ("S", 4, 6): 1, ("VP", 4, 6): 1, ("VP", 5, 6): 1})


def test_evalb_brackets_follow_collins_prm():
    words, brackets = evalb_brackets(Tree.fromstring("(TOP (S (NP (PRP He)) (VP (VBD gave) (PRT (RP up))) (. .)))"))
    assert words == ["He", "gave", "up"]
    assert brackets == Counter({("S", 0, 3): 1, ("NP", 0, 1): 1, ("VP", 1, 3): 1, ("ADVP", 2, 3): 1})  # PRT = ADVP, TOP gone
    _, unlabeled = evalb_brackets(Tree.fromstring(FIX), labeled=False)
    assert unlabeled[("", 4, 6)] == 2 and sum(unlabeled.values()) == 7  # a multiset


def test_sentence_f1_conventions_for_sentences_without_gold_spans():
    assert sentence_f1(frozenset(), frozenset()) == 1.0  # every 2-word sentence
    assert sentence_f1(frozenset({(1, 3)}), frozenset()) == 0.0  # precision 0, recall 1 -> 0
    assert sentence_f1(frozenset(), frozenset({(0, 2)})) == 0.0
    assert sentence_f1(frozenset({(0, 2), (2, 4)}), frozenset({(0, 2)})) == pytest.approx(2 / 3)


def test_two_word_and_flat_sentences():
    two, flat = gold(LEFT), gold(DOG)
    assert two.words == ["John", "left"] and two.spans == frozenset()
    assert protocol_spans(right_branching(two.words), 2) == frozenset()
    assert flat.spans == frozenset()
    assert protocol_spans(right_branching(flat.words), 3) == {(1, 3)}
    with pytest.raises(ValueError, match="leaves"):
        protocol_spans(right_branching(["a", "b"]), 3)


def test_too_short_sentences_are_skipped_and_counted():
    log = ReadLog()
    trees = [PTBTree(Tree.fromstring(t), f"f:{i}") for i, t in enumerate([CAT, "(S (NP (PRP He)) (. .))", "(FRAG (NP (-NONE- *)) (. .))"])]
    assert [g.source for g in prepare_golds(trees, log)] == ["f:0"]
    assert log.n_skipped == 2 and log.examples[0].startswith("f:1: fewer than 2 words")


def test_right_skew_bias_by_hand():
    # m = 4 words, mean distance 2: gaps 0, 1, 2 get 2 * bias * (1, 2/3, 1/3)
    assert right_skewed([1.0, 2.0, 3.0], 1.5) == pytest.approx([4.0, 4.0, 4.0])
    assert right_skewed([3.0, 2.0, 1.0], 0.0) == [3.0, 2.0, 1.0] and right_skewed([], 2.0) == []
    words = "a b c d e".split()
    left_leaning = [1.0, 2.0, 3.0, 4.0]  # left-branching distances (the last gap splits first)
    assert tree_from_distances(words, left_leaning) == left_branching(words)
    assert tree_from_distances(words, right_skewed(left_leaning, 10.0)) == right_branching(words)
    assert tree_from_distances(words, right_skewed([0.0] * 4, 10.0)) == tree_from_distances(words, [0.0] * 4)  # no scale: no bias


def test_merge_distances_average_linkage_by_hand():
    # a-b merge first (0.9); then ab|c has mean (0.1 + 0.2) / 2 = 0.15 against c|d's 0.8; ab|cd last
    sim = [[1.0, 0.9, 0.1, 0.1], [0.9, 1.0, 0.2, 0.1], [0.1, 0.2, 1.0, 0.8], [0.1, 0.1, 0.8, 1.0]]
    assert merge_distances(sim) == [1.0, 3.0, 2.0]
    assert to_ptb(tree_from_distances(list("abcd"), merge_distances(sim))) == "(X (X a b) (X c d))"
    # all ties: the smallest merge, nearest the middle, first (b-c), then d-e (size 2), then a-bc (3 beats 4)
    assert merge_distances(torch.ones(5, 5)) == [3.0, 1.0, 4.0, 2.0]
    assert merge_distances([[1.0]]) == [] and merge_distances(torch.ones(0, 0)) == []
    with pytest.raises(ValueError, match=r"square \(W, W\) matrix, got shape \(2, 3\)"):
        merge_distances(torch.ones(2, 3))
    with pytest.raises(ValueError, match=r"got shape \(3,\)"):
        merge_distances([1.0, 2.0, 3.0])


def test_scorer_by_hand_right_branching():
    scorer = ConstituencyScorer()
    for text in (CAT, FIX, LEFT, DOG):
        g = gold(text)
        scorer.add(g, right_branching(g.words), right_branching(g.evalb_words))
    r = scorer.result()
    # per sentence (tp, predicted, gold): CAT (3, 4, 4) FIX (2, 3, 2) LEFT (0, 0, 0) DOG (0, 1, 0)
    assert r["sentence_f1"] == pytest.approx(100 * (0.75 + 0.8 + 1.0 + 0.0) / 4)
    assert r["corpus_precision"] == pytest.approx(100 * 5 / 8)
    assert r["corpus_recall"] == pytest.approx(100 * 5 / 6)
    assert r["corpus_f1"] == pytest.approx(100 * 10 / 14)
    assert r["n_sentences_le10"] == 4 and r["sentence_f1_le10"] == r["sentence_f1"]
    assert r["f1_by_length"] == {"2-5": {"n": 3, "sentence_f1": pytest.approx(60.0)}, "6-10": {"n": 1, "sentence_f1": pytest.approx(75.0)}}
    assert r["label_recall"]["VP"] == {"n": 3, "recall": 100.0}  # (2,6), (1,5), (3,5)
    assert r["label_recall"]["NP"] == {"n": 2, "recall": 50.0}  # (4,6) found, (0,2) not
    # EVALB-style unlabeled (matched, gold, test): CAT (4, 5, 5) FIX (3, 7, 5) LEFT (1, 3, 1) DOG (1, 1, 2)
    assert r["evalb_unlabeled"]["precision"] == pytest.approx(100 * 9 / 13)
    assert r["evalb_unlabeled"]["recall"] == pytest.approx(100 * 9 / 16)


def test_scorer_left_branching_on_one_sentence():
    g = gold(CAT)
    scorer = ConstituencyScorer()
    scorer.add(g, left_branching(g.words))
    r = scorer.result()
    assert r["sentence_f1"] == pytest.approx(25.0) and "evalb_unlabeled" not in r


def test_island_stats_by_hand():
    g = gold(CAT)  # constituents of 2+ words: {0,1} {2..5} {3,4,5} {4,5} and the sentence
    levels = [
        [Island(0, (0, 1), 1.0), Island(0, (2, 4), 1.0), Island(0, (3,), 1.0), Island(0, (5,), 1.0)],
        [Island(1, (0, 1, 2, 3, 4, 5), 1.0)],
    ]
    stats = island_stats([levels], [g])
    assert stats[0] == {"level": 0, "n_islands": 2, "precision": 50.0, "recall": 20.0, "mean_size": 2.0,
                        "discontinuous": 50.0, "gold_mean_size": pytest.approx(3.4)}
    assert stats[1]["precision"] == 100.0 and stats[1]["recall"] == 20.0 and stats[1]["mean_size"] == 6.0


def test_real_treebank_sample_counts():
    """The first 50 WSJ trees: 1,050 words with the 36 word tags, 1,052 EVALB words, 69 empty
    elements (counted independently with a regex over the raw .mrg text)."""
    trees, log = read_ptb("nltk:treebank", max_sentences=50)
    golds = prepare_golds(trees, log)
    assert len(golds) == 50 and log.n_skipped == 0
    assert sum(len(g.words) for g in golds) == 1050
    assert sum(len(g.evalb_words) for g in golds) == 1052
    assert sum(tag == "-NONE-" for t in trees for _, tag in t.tree.pos()) == 69
