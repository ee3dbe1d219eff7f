"""Discontinuous units: extraction from each format, trace re-attachment, and hand-computed scores."""

from collections import Counter

import pytest
import torch
from nltk import Tree

from glomtext.evaluation.readers import ReadError
from glomtext.evaluation.traces import TraceTree
from glomtext.evaluation.units import Unit, UnitScorer, UnitSentence, contrast_words, disc_bracket_prf, pair_auc, read_units
from glomtext.islands import Island
from glomtext.paths import data_dir


def test_unit_gaps_and_contrast_words():
    shut_up = Unit("compound:prt", (1, 4))
    assert shut_up.gaps == (2, 3) and not shut_up.contiguous
    assert contrast_words(shut_up, 5) == (2, 3)
    assert contrast_words(Unit("NP", (2, 3)), 5) == (1, 4)  # neighbours
    assert contrast_words(Unit("NP", (0, 1)), 2) == ()


def conllu_row(i, form, head, deprel):
    return "\t".join([str(i), form, "_", "X", "_", "_", str(head), deprel, "_", "_"])


def test_ud_compound_prt_units(tmp_path):
    path = tmp_path / "x.conllu"
    path.write_text("\n".join([
        conllu_row(1, "back", 0, "root"), conllu_row(2, "them", 1, "obj"), conllu_row(3, "up", 1, "compound:prt"), "",
        conllu_row(1, "give", 0, "root"), conllu_row(2, "up", 1, "compound:prt"), "",
        conllu_row(1, "bad", 0, "root"), conllu_row(2, "up", 7, "compound:prt"), "",
    ]) + "\n")
    units = read_units("ud_prt", str(path))
    assert [s.units for s in units.sentences] == [[Unit("compound:prt", (0, 2))], [Unit("compound:prt", (0, 1))]]
    assert units.counts()["discontinuous"] == 1 and units.counts()["contiguous"] == 1
    assert units.log.skipped == {"compound:prt whose head is not a word of the sentence": 1}


def test_parseme_codes(tmp_path):
    def row(i, form, mwe):
        return "\t".join([str(i), form] + ["_"] * 8 + [mwe])

    path = tmp_path / "x.cupt"
    path.write_text("\n".join([
        "# global.columns = ID FORM LEMMA UPOS XPOS FEATS HEAD DEPREL DEPS MISC PARSEME:MWE",
        row(1, "picked", "1:VPC.full"), row(2, "one", "*"), row(3, "up", "1;2:VID"), row(4, "there", "2"), "",
        row(1, "x", "3"), "",  # continues an expression that never started
        row(1, "y", "_"), "",  # not annotated
    ]) + "\n")
    units = read_units("parseme", str(path))
    assert units.sentences[0].units == [Unit("VPC.full", (0, 2)), Unit("VID", (2, 3))]
    assert units.log.skipped == {"malformed PARSEME:MWE code": 1, "PARSEME:MWE column not annotated ('_')": 1}


def test_streusle_strong_mwes(tmp_path):
    def row(i, form, smwe, lexcat="_"):
        return "\t".join([str(i), form] + ["_"] * 8 + [smwe, lexcat] + ["_"] * 7)

    path = tmp_path / "x.conllulex"
    path.write_text("\n".join([
        row(1, "have", "1:1", "V.LVC.full"), row(2, "a", "_", "DET"), row(3, "look", "1:2"), "",
        row(1, "x", "2:2"), "",  # a group without its first word
        row(1, "y", "1-1"), "",  # malformed
    ]) + "\n")
    units = read_units("streusle", str(path))
    assert [s.units for s in units.sentences] == [[Unit("V.LVC.full", (0, 2))]]
    assert units.log.skipped == {"SMWE group without a first word (position 1)": 1, "malformed SMWE column": 1}


def test_unknown_kind_and_unusable_file(tmp_path):
    with pytest.raises(ValueError, match="unknown unit kind"):
        read_units("mwe", "x")
    path = tmp_path / "x.conllu"
    path.write_text(conllu_row(1, "a", 5, "compound:prt") + "\n")
    with pytest.raises(ReadError, match="no usable ud_prt sentence"):
        read_units("ud_prt", str(path))


@pytest.mark.parametrize("kind, path, n, sentences, disc, total", [
    # counted independently with awk / a few lines of plain Python on the files
    ("ud_prt", "ud_ewt/en_ewt-ud-dev.conllu", 500, 500, 4, 25),
    ("ud_prt", "ud_ewt/en_ewt-ud-dev.conllu", None, 2001, 19, 74),  # as in the data README
    ("parseme", "parseme_en/train.cupt", 1000, 1000, 36, 101),
    ("streusle", "streusle/streusle.ud_dev.conllulex", None, 554, 26, 287),  # as in the data README
])
def test_real_unit_counts(kind, path, n, sentences, disc, total):
    units = read_units(kind, str(data_dir() / path), n)
    counts = units.counts()
    assert (counts["sentences"], counts["discontinuous"], counts["discontinuous"] + counts["contiguous"]) == (sentences, disc, total)
    assert units.log.n_skipped == 0


def trace_units(text: str):
    tree = TraceTree(Tree.fromstring(text))
    notes = tree.move_antecedents()
    return tree.words, sorted((label, tuple(sorted(span))) for label, span in tree.constituents() if len(span) >= 2), notes


def test_ich_makes_the_host_np_discontinuous():
    words, spans, notes = trace_units(
        "(S (NP-SBJ (NP (DT The) (NN claim)) (SBAR (-NONE- *ICH*-1))) (VP (VBZ is) (ADJP-PRD (JJ clear)))"
        " (SBAR-1 (IN that) (S (NP-SBJ (PRP he)) (VP (VBD lied)))) (. .))")
    assert words == ["The", "claim", "is", "clear", "that", "he", "lied", "."]
    assert ("NP", (0, 1, 4, 5, 6)) in spans  # "The claim ... that he lied"
    assert ("SBAR", (4, 5, 6)) in spans and ("S", tuple(range(8))) in spans
    assert notes == {"moved": 1}


def test_wh_trace_and_empty_antecedent_and_rnr():
    _, spans, _ = trace_units("(SBAR (WHNP-1 (WP what)) (S (NP-SBJ (PRP he)) (VP (VBD saw) (NP (-NONE- *T*-1)))))")
    assert ("VP", (0, 2)) in spans  # "what ... saw"
    _, spans, notes = trace_units("(NP (NP (DT the) (NN man)) (SBAR (WHNP-1 (-NONE- 0)) (S (NP-SBJ (PRP I)) (VP (VBD saw) (NP (-NONE- *T*-1))))))")
    assert notes == {"antecedent without overt words": 1}
    _, spans, notes = trace_units("(S (VP (VP (VB buy) (NP (-NONE- *RNR*-1))) (CC and) (VP (VB sell) (NP (-NONE- *RNR*-1))) (NP-1 (NNS stocks))))")
    assert ("VP", (2, 3)) in spans and notes == {"moved": 1}  # the nearest trace wins


def test_ptb_traces_and_export_units_on_real_files():
    units = read_units("ptb_traces", "nltk:treebank", 50)
    assert units.counts()["sentences"] == 50 and units.notes == {"moved": 26, "trace inside its antecedent": 1}
    # wsj_0003, sentence 1: "(S (S-TPC-1 A form ... ago) , (NP-SBJ researchers) (VP reported (SBAR 0 (S *T*-1))) .)"
    first = next(s for s in units.sentences if any(not u.contiguous for u in s.units))
    assert first.source.endswith("wsj_0003.mrg:2")
    assert [(u.label, u.gaps) for u in first.units if not u.contiguous] == [("VP", (32, 33))]  # gap ", researchers"
    assert first.words[34] == "reported" and len(first.words) == 36
    export = read_units("export", str(data_dir() / "disco" / "alpinosample.export"))
    assert export.counts()["discontinuous"] == 2 and export.counts()["by_label"] == {"PPART": 2}
    disc = [u for u in export.sentences[1].units if not u.contiguous]
    assert disc[0].gaps == (8, 9, 10)


def one_hot(*rows):
    """(W, L, 3) unit vectors from per-word tuples of per-level axis indices."""
    return torch.stack([torch.stack([torch.eye(3)[a] for a in levels]) for levels in rows])


def islands(*levels):
    return [[Island(level, tuple(m), 1.0) for m in members] for level, members in enumerate(levels)]


def test_unit_scores_by_hand():
    s1 = UnitSentence("s1", ["he", "shut", "the", "kids", "up"], [Unit("prt", (1, 4)), Unit("NP", (2, 3)), Unit("N", (2, 3))])
    s2 = UnitSentence("s2", ["she", "gave", "it", "up"], [Unit("prt", (1, 3))])
    scorer = UnitScorer(n_levels=2)
    # level 0 separates the units; level 1 puts every word on one vector (all cosines tie)
    scorer.add(s1, one_hot((0, 0), (1, 0), (2, 0), (2, 0), (1, 0)), islands([(0,), (1, 4), (2, 3)], [(0, 1, 2, 3, 4)]))
    scorer.add(s2, one_hot((0, 0), (1, 0), (1, 0), (2, 0)), islands([(0,), (1, 2), (3,)], [(0, 1, 2, 3)]))
    r = scorer.result()
    d, c = r["discontinuous"], r["contiguous"]
    assert d["n_units"] == 2 and c["n_units"] == 1  # "the kids" twice (two labels) counts once
    assert d["exact_by_level"] == [50.0, 0.0] and d["contained_by_level"] == [50.0, 0.0]  # the sentence island is not "contained"
    assert d["exact_any_level"] == 50.0
    # AUC, s1 level 0: member pair 1 vs gap pairs 0 -> 1.0; s2: pair 0 vs gap pairs (1, 0) -> 0.25; level 1: ties -> 0.5
    assert d["auc_by_level"] == [pytest.approx(62.5), pytest.approx(50.0)] and d["auc_best_level"] == 0
    assert c["exact_by_level"] == [100.0, 0.0] and c["auc_by_level"] == [pytest.approx(100.0), pytest.approx(50.0)]
    # disc brackets: gold {1,4} and {1,3}; level 0 predicts the discontinuous island {1,4}
    assert r["disc_bracket"]["by_level"][0] == {"precision": 100.0, "recall": 50.0, "f1": pytest.approx(200 / 3), "matched": 1, "gold": 2, "predicted": 1}
    assert r["disc_bracket"]["by_level"][1]["predicted"] == 0 and r["disc_bracket"]["any_level"]["matched"] == 1


def test_disc_brackets_match_within_sentences_only():
    a = Counter({frozenset({0, 2}): 1})
    assert disc_bracket_prf([(a, Counter()), (Counter(), a)])["matched"] == 0
    assert disc_bracket_prf([(a + a, a)]) == {"precision": 100.0, "recall": 50.0, "f1": pytest.approx(200 / 3), "matched": 1, "gold": 2, "predicted": 1}


def test_pair_auc_ties_count_half():
    assert pair_auc(torch.tensor([1.0, 0.5]), torch.tensor([0.5, 0.0])) == pytest.approx((1 + 1 + 0.5 + 1) / 4)


def test_scorer_rejects_mismatched_vectors():
    with pytest.raises(ValueError, match="expected vectors"):
        UnitScorer(2).add(UnitSentence("s", ["a", "b"], []), torch.zeros(3, 2, 4), [[], []])
