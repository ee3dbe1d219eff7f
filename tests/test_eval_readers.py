"""Readers: malformed items are skipped and counted with file and line; real files give known counts."""

import pytest

from glomtext.evaluation.readers import ReadError, read_conll, read_discbracket, read_export, read_ptb
from glomtext.paths import data_dir


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_ptb_reader_skips_and_counts_malformed_trees(tmp_path):
    path = write(tmp_path, "bad.mrg", "\n".join([
        "( (S (NP (DT The) (NN cat)) (VP (VBD sat))) )",  # 1: good, nameless outer bracket removed
        "garbage here",  # 2: text outside brackets
        "(S (NP (DT the) dog) (VP (VBD left)))",  # 3: a word without POS tag
        ")",  # 4: stray close
        "(S (NP (PRP It)) (VP (VBZ works)))",  # 5: good
        "(S (NP (PRP unclosed)",  # 6: never closed
    ]))
    trees, log = read_ptb(str(path))
    assert [t.tree.label() for t in trees] == ["S", "S"]
    assert [t.source for t in trees] == [f"{path}:1", f"{path}:5"]
    assert log.read == 2 and log.n_skipped == 4
    assert log.skipped == {"text outside brackets": 1, "malformed tree": 1, "unbalanced ')'": 1, "unclosed '('": 1}
    assert log.examples[1] == f"{path}:3: malformed tree (word 'dog' has no POS tag of its own)"


def test_ptb_reader_errors_name_the_input(tmp_path):
    with pytest.raises(ReadError, match="no file matches"):
        read_ptb(str(tmp_path / "*.mrg"))
    path = write(tmp_path, "junk.mrg", "not a treebank\n")
    with pytest.raises(ReadError, match=r"junk.mrg: no readable tree .*junk.mrg:1: text outside brackets"):
        read_ptb(str(path))


def test_ptb_glob_and_max_sentences(tmp_path):
    for i in range(3):
        write(tmp_path, f"wsj_{i}.mrg", "(S (NP (PRP It)) (VP (VBZ works)))\n" * 2)
    trees, _ = read_ptb(str(tmp_path / "wsj_*.mrg"), max_sentences=5)
    assert len(trees) == 5 and trees[-1].source.endswith("wsj_2.mrg:1")


def test_nltk_treebank_sample_files_in_order():
    """wsj_0001-0003 hold 33 trees (grep -c '^( ' on the raw files), so tree 34 opens wsj_0004
    (on line 2: the files start with an empty line)."""
    trees, _ = read_ptb("nltk:treebank", max_sentences=34)
    assert {t.source.split("/")[-1].split(":")[0] for t in trees[:33]} == {"wsj_0001.mrg", "wsj_0002.mrg", "wsj_0003.mrg"}
    assert trees[33].source.endswith("wsj_0004.mrg:2")
    assert " ".join(trees[0].tree.leaves()[:3]) == "Pierre Vinken ,"


def test_conll_reader_drops_ranges_and_empty_nodes_and_skips_bad_sentences(tmp_path):
    row = "\t".join(["{}", "{}", "_", "X", "_", "_", "0", "root", "_", "_"])
    path = write(tmp_path, "x.conllu", "\n".join([
        "# sent_id = 1", "1-2\tdon't\t_\t_\t_\t_\t_\t_\t_\t_", row.format(1, "do"), row.format(2, "n't"), "2.1\tgo\t_\t_\t_\t_\t_\t_\t_\t_", "",
        "# sent_id = 2", row.format(1, "a"), "2\ttoo\tfew", "",  # wrong width
        "# sent_id = 3", row.format(1, "a"), row.format(3, "b"), "",  # ids skip 2
        row.format(1, "ok"), "",
    ]))
    sentences, log = read_conll(path, 10)
    assert [s.words for s in sentences] == [["do", "n't"], ["ok"]]
    assert sentences[0].source == f"{path}:1" and sentences[1].source == f"{path}:15"
    assert log.skipped == {"line without 10 tab-separated columns": 1, "word ids not 1, 2, 3, ...": 1}
    assert log.examples[0] == f"{path}:9: line without 10 tab-separated columns (got 3)"


def test_export_reader_formats_and_root_attached_words(tmp_path):
    path = write(tmp_path, "x.export", "\n".join([
        "#FORMAT 3",
        "#BOS 1", "he\tPRON\t--\tSB\t500", "shut\tV\t--\tHD\t501", "them\tPRON\t--\tOA\t501", "up\tPTKVZ\t--\tSVP\t501", ".\t$.\t--\t--\t0",
        "#500\tNP\t--\tSB\t502", "#501\tVP\t--\tHD\t502", "#502\tS\t--\t--\t0", "#EOS 1",
        "#BOS 2", "a\tX\t--\t--\t599", "#EOS 2",  # parent 599 does not exist
    ]))
    trees, log = read_export(path)
    assert len(trees) == 1 and trees[0].words == ["he", "shut", "them", "up"]  # "." hangs off the root
    assert trees[0].nodes == [("NP", frozenset({0})), ("VP", frozenset({1, 2, 3})), ("S", frozenset({0, 1, 2, 3}))]
    assert log.skipped == {"export parent that is not a node of the sentence": 1}


def test_real_export_and_discbracket_samples():
    d = data_dir() / "disco"
    trees, log = read_export(d / "alpinosample.export")
    # tokens per sentence minus those attached to the root (awk on the file): 30-4, 20-1, 26-1
    assert [len(t.words) for t in trees] == [26, 19, 25] and log.n_skipped == 0
    ppart = [span for label, span in trees[1].nodes if label == "PPART"]
    assert ppart == [frozenset(range(0, 8)) | frozenset(range(11, 19))]  # "Na ... begonnen aan ... dwergster", gap "is onze ster"
    trees, _ = read_discbracket(d / "t2.dbr")
    assert len(trees) == 6 and trees[2].words == ["a", "b", "c", "d", "e"]
    assert ("X", frozenset({0, 2})) in trees[2].nodes


def test_discbracket_bad_lines(tmp_path):
    path = write(tmp_path, "x.dbr", "(S (A 0=a) (B 1=b))\n(S (A 0=a) (B 2=b))\n(S (A a))\n")
    trees, log = read_discbracket(path)
    assert len(trees) == 1 and log.n_skipped == 2
    assert log.examples == [f"{path}:2: malformed discbracket tree (leaf indices are not 0 .. n-1 exactly once)",
                            f"{path}:3: malformed discbracket tree (leaf 'a' is not INDEX=WORD)"]
