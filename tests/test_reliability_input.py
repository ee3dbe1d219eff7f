"""Hostile input for islands, the `islands` command and the evaluation readers (see RELIABILITY.md).

Property-based (hypothesis, derandomized so every run tries the same examples) and fixed cases:
empty input, whitespace, punctuation, random Unicode with control characters, combining marks and
emoji, invalid UTF-8, unbalanced brackets, CoNLL-U lines with missing columns, 10,000-word
sentences, pickled weights. Each must give a result or a clear error naming the input and
position, and every skipped item must be counted. Then: a 100,000-sentence stream in flat memory,
and identical islands and scores from two separate processes.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nltk import Tree
from support import save_tiny_model, tiny_model

from glomtext.commands.islands import main as islands_main
from glomtext.evaluation.cli import main as eval_main
from glomtext.evaluation.readers import (
    ReadError,
    read_conll,
    read_discbracket,
    read_export,
    read_ptb,
)
from glomtext.evaluation.units import read_units
from glomtext.islands import (
    MAX_WORDS,
    distance_tree,
    extract_islands,
    find_islands,
    find_islands_batch,
    island_tree,
    load_model,
    write_jsonl,
)
from glomtext.paths import data_dir


def examples(n: int) -> settings:
    """n derandomized examples (the same ones every run), no time limit per example."""
    return settings(max_examples=n, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


# characters that break naive text handling, mixed into hypothesis' own (all of Unicode but surrogates)
NASTY = ["\x00", "\x07", "\x1b[31m", "\r", "\t", "\x0b", "\x1c", "\x85", "\u2028", "\u200b", "\ufeff", "e\u0301",
         "\u0308\u0308", "🙂", "👍🏽", "👨‍👩‍👧", "(", ")", "((", "]", "…", "\ufffd", "\u202e"]
PIECE = st.one_of(st.characters(blacklist_categories=("Cs",)), st.sampled_from(NASTY))
TEXT = st.lists(st.one_of(PIECE, st.just(" ")), max_size=24).map("".join)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny tensors on a shared 2-core machine: one thread is up to 30x faster than two contending."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny():
    return tiny_model()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("model") / "tiny"
    save_tiny_model(path)
    return str(path)


def unescape(leaves: list[str]) -> list[str]:
    return [w.replace("-LRB-", "(").replace("-RRB-", ")") for w in leaves]


def check_result(result, sentence, num_levels: int = 3) -> None:
    """One SentenceIslands is whole: every word in exactly one island per level, finite scores,
    trees over exactly the words, and a JSON form that survives a round trip."""
    words = sentence.split() if isinstance(sentence, str) else [str(w) for w in sentence]
    assert result.sentence == (sentence if isinstance(sentence, str) else " ".join(words)) and result.words == words
    assert len(result.islands) == num_levels
    for level in result.islands:
        assert sorted(m for isl in level for m in isl.members) == list(range(len(words)))
        assert all(math.isfinite(isl.score) and -1.0001 <= isl.score <= 1.0001 for isl in level)
    assert len(result.distances) == max(len(words) - 1, 0) and all(math.isfinite(d) for d in result.distances)
    d = json.loads(json.dumps(result.to_dict(), ensure_ascii=False))
    if words and isinstance(sentence, str):  # (pre-split words may hold spaces, which no bracket string keeps)
        for tree in d["trees"].values():
            assert unescape(Tree.fromstring(tree).leaves()) == words


# ------------------------------------------------------------------------------ extract_islands


@examples(100)
@given(sentences=st.lists(st.one_of(TEXT, st.lists(TEXT, max_size=6)), max_size=5))
def test_extract_islands_takes_any_text_and_word_lists(tiny, sentences):
    model, tokenizer = tiny
    results = list(extract_islands(model, tokenizer, sentences, batch_size=2, device="cpu"))
    assert len(results) == len(sentences)  # one result per input, in order: nothing dropped
    for sentence, result in zip(sentences, results):
        check_result(result, sentence)


@pytest.mark.parametrize("sentence, windows", [
    ("", 0), ("   ", 0), ("\t\n\r", 0), ("!!! ?! ... ,,, ;", 1), ("((( ]] ) [[ )", 1), ("e\u0301 👨‍👩‍👧 \x00\x07 \u202eabc", 1),
    pytest.param(" ".join(["the cat sat on the mat ."] * 50), 6, id="350 words"),  # 62 pieces per window
])
def test_extract_islands_fixed_cases(tiny, sentence, windows):
    model, tokenizer = tiny
    [result] = extract_islands(model, tokenizer, [sentence], device="cpu")
    check_result(result, sentence)
    assert result.windows == windows


def test_no_input_gives_no_output(tiny):
    assert list(extract_islands(*tiny, [], device="cpu")) == []
    assert list(extract_islands(*tiny, iter([]), device="cpu")) == []


def test_a_10000_word_sentence_is_a_clear_error_naming_it_after_the_sentences_before(tiny):
    sentences = ["the cat sat", "new york", " ".join(["word"] * 10_000), "never reached"]
    results = extract_islands(*tiny, sentences, batch_size=4, device="cpu")
    assert [r.words for r in (next(results), next(results))] == [["the", "cat", "sat"], ["new", "york"]]
    with pytest.raises(ValueError, match=f"^sentence 3 has 10000 words; islands compare every pair, so a sentence may have at most {MAX_WORDS}: split it$"):
        next(results)
    with pytest.raises(ValueError, match=f"states\\[1\\] has 10000 words;.* at most {MAX_WORDS}"):
        find_islands_batch([torch.zeros(3, 2, 4), torch.zeros(10_000, 2, 4)])


def test_trees_whose_words_disagree_with_their_states_or_islands_are_clear_errors():
    states = torch.randn(4, 2, 8)
    with pytest.raises(ValueError, match="^3 words but states for 4$"):
        distance_tree(["a", "b", "c"], states)
    islands = find_islands(states, threshold=2.0)  # every word alone
    with pytest.raises(ValueError, match="islands do not cover word 4"):
        island_tree(["a", "b", "c", "d", "e"], islands)


# ----------------------------------------------------------------------------- the islands command


def expected_lines(data: bytes) -> list[bytes]:
    """The lines `glomtext islands -i FILE` reads: split at b'\\n', no empty line after a final newline."""
    lines = data.split(b"\n")
    return lines[:-1] if lines[-1] == b"" else lines


def is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@examples(40)  # x 4 output formats
@given(lines=st.lists(st.one_of(st.binary(max_size=30), TEXT.map(lambda t: t.encode("utf-8"))), max_size=6))
def test_islands_command_takes_any_bytes(model_dir, tmp_path, capsys, lines):
    source, target = tmp_path / "in.txt", tmp_path / "out"
    data = b"\n".join(lines)
    source.write_bytes(data)
    raw = expected_lines(data)
    bad = [i for i, line in enumerate(raw, 1) if not is_utf8(line)]
    for fmt in ("json", "ptb", "text", "html"):
        code = islands_main(["--model", model_dir, "-i", str(source), "-o", str(target), "-f", fmt, "-q"])
        out, err = capsys.readouterr()
        assert code == 0 and out == "" and "Traceback" not in err
        assert f"wrote {len(raw)} sentence(s)" in err
        assert (f"{len(bad)} input line(s) were not valid UTF-8 (lines {bad[0]}" in err) if bad else ("UTF-8" not in err)
        written = target.read_text(encoding="utf-8")
        if fmt == "json":
            objects = [json.loads(line) for line in written.split("\n")[:-1]]
            assert [o["sentence"] for o in objects] == [r.decode("utf-8", "replace").rstrip("\r\n") for r in raw]
        elif fmt == "ptb":
            assert written.count("\n") == len(raw)  # one line per input line, empty for an empty sentence


def test_islands_command_on_an_empty_file_and_a_too_long_line(model_dir, tmp_path, capsys):
    source, target = tmp_path / "in.txt", tmp_path / "out.jsonl"
    source.write_bytes(b"")
    assert islands_main(["--model", model_dir, "-i", str(source), "-o", str(target), "-q"]) == 0
    assert target.read_text() == "" and "wrote 0 sentence(s)" in capsys.readouterr().err
    source.write_text("the cat sat\n" + "word " * 10_000 + "\nnever reached\n")
    assert islands_main(["--model", model_dir, "-i", str(source), "-o", str(target), "-f", "json", "-q"]) == 2
    err = capsys.readouterr().err
    assert err == f"glomtext islands: error: sentence 2 has 10000 words; islands compare every pair, so a sentence may have at most {MAX_WORDS}: split it\n"
    assert [json.loads(line)["sentence"] for line in target.read_text().splitlines()] == ["the cat sat"]


# ------------------------------------------------------------------------------- safe model loading


def test_a_model_directory_with_only_pickled_weights_is_refused(model_dir, tmp_path, capsys):
    pickled = tmp_path / "pickled"
    save_tiny_model(pickled)
    torch.save(load_model(pickled)[0].state_dict(), pickled / "pytorch_model.bin")
    (pickled / "model.safetensors").unlink()
    message = f"{str(pickled)!r} holds its weights only in pickle files (pytorch_model.bin); glomtext loads weights only from safetensors"
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_model(pickled)
    assert islands_main(["--model", str(pickled), "x"]) == 2
    assert capsys.readouterr().err.startswith(f"glomtext islands: error: {message}")


def test_a_truncated_safetensors_file_is_a_clear_error(tmp_path, capsys):
    save_tiny_model(tmp_path / "m")
    weights = tmp_path / "m" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    assert islands_main(["--model", str(tmp_path / "m"), "x"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"glomtext islands: error: cannot load the model from '{tmp_path / 'm'}': ") and err.count("\n") == 1


# ------------------------------------------------------------------------------------- readers

# a treebank word: no brackets or white space, and no final backslash (nltk reads a backslash before ")" as an escape)
WORD = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp"), blacklist_characters="()"),
               min_size=1, max_size=6).filter(lambda w: not any(c.isspace() for c in w) and not w.endswith("\\"))
PTB_KINDS = ("good", "word_without_tag", "stray_close", "text_outside")


@st.composite
def ptb_items(draw):
    """(kind, words, text) of one treebank item; the words of a good tree are its leaves."""
    kind = draw(st.sampled_from(PTB_KINDS))
    words = draw(st.lists(WORD, min_size=1, max_size=5))
    tagged = " ".join(f"(NN {w})" for w in words)
    text = {"good": f"( (S (NP {tagged}) (VP (VBD x))) )", "word_without_tag": f"(S (NP {tagged} {words[0]}))",
            "stray_close": ")", "text_outside": f"junk {words[0]}"}[kind]
    return kind, words, text


@examples(200)
@given(items=st.lists(ptb_items(), max_size=6), unclosed_last=st.booleans())
def test_ptb_reader_counts_every_item(tmp_path, items, unclosed_last):
    path = tmp_path / "t.mrg"
    path.write_text("\n".join([t for _, _, t in items] + (["(S (NP (NN open)"] if unclosed_last else [])), encoding="utf-8")
    good = [words + ["x"] for kind, words, _ in items if kind == "good"]
    if not good:
        with pytest.raises(ReadError, match=f"^{path}: no readable tree"):
            read_ptb(str(path))
        return
    trees, log = read_ptb(str(path))
    assert [t.tree.leaves() for t in trees] == good
    assert log.read == len(good) and log.n_skipped == len(items) - len(good) + unclosed_last
    assert all(e.startswith(f"{path}:") for e in log.examples)  # every skip names file and line


def conll_line(index: str, form: str, n_columns: int) -> str:
    return "\t".join([index, form] + ["_"] * (n_columns - 2))


@st.composite
def conll_sentences(draw):
    """(kind, words, text) of one CoNLL-U sentence: good, a line with a missing column, or a bad id."""
    kind = draw(st.sampled_from(("good", "missing_column", "bad_id")))
    form = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\t\n"), min_size=1, max_size=6)
    words = draw(st.lists(form.filter(lambda f: f.strip()), min_size=1, max_size=4))
    lines = [conll_line(str(i), w, 10) for i, w in enumerate(words, 1)]
    bad = draw(st.integers(0, len(lines) - 1))
    if kind == "missing_column":
        lines[bad] = lines[bad].rsplit("\t", 1)[0]
    elif kind == "bad_id":
        lines[bad] = conll_line("7" if bad != 6 else "9", words[bad], 10)
    return kind, words, "\n".join(["# text = " + " ".join(words)] + lines)


@examples(200)
@given(sentences=st.lists(conll_sentences(), min_size=1, max_size=5))
def test_conll_reader_counts_every_sentence(tmp_path, sentences):
    path = tmp_path / "x.conllu"
    path.write_text("\n\n".join(t for _, _, t in sentences) + "\n", encoding="utf-8")
    good = [words for kind, words, _ in sentences if kind == "good"]
    if not good:
        with pytest.raises(ReadError, match="no readable sentence"):
            read_conll(path, 10)
        return
    read, log = read_conll(path, 10)
    assert [s.words for s in read] == good and log.read == len(good) and log.n_skipped == len(sentences) - len(good)
    assert set(log.skipped) <= {"line without 10 tab-separated columns", "word ids not 1, 2, 3, ..."}


@examples(500)
@given(text=st.lists(st.one_of(PIECE, st.sampled_from(["(", ")", "\n", "\t", "#BOS 1", "#EOS 1", "#", "=", "0", "1"])),
                     max_size=120).map("".join),
       reader=st.sampled_from(["ptb", "conllu", "cupt", "conllulex", "export", "dbr", "units:ud_prt", "units:parseme",
                               "units:streusle", "units:ptb_traces", "units:export"]))
def test_readers_never_crash_on_random_text(tmp_path, text, reader):
    """Any text: a result whose counts add up, or a ReadError naming the file; nothing else."""
    suffix = {"ptb": ".mrg", "dbr": ".dbr", "units:ptb_traces": ".mrg", "units:export": ".export"}.get(reader, "." + reader.split(":")[-1])
    path = tmp_path / f"random{suffix}"
    path.write_text(text, encoding="utf-8")
    read = {"ptb": lambda: read_ptb(str(path)), "conllu": lambda: read_conll(path, 10), "cupt": lambda: read_conll(path, 11),
            "conllulex": lambda: read_conll(path, 19), "export": lambda: read_export(path), "dbr": lambda: read_discbracket(path)}
    try:
        if reader.startswith("units:"):
            units = read_units(reader.split(":")[1], str(path))
            assert units.log.read == len(units.sentences)
        else:
            items, log = read[reader]()
            assert log.read == len(items) > 0
    except ReadError as e:
        assert str(path) in str(e)


def test_invalid_utf8_in_a_treebank_is_decoded_with_replacement_and_counted(tmp_path, capsys):
    path = tmp_path / "bad.mrg"
    path.write_bytes(b"(S (NN a) (NN \xff))\n(S (NN b) (NN c))\n")
    trees, log = read_ptb(str(path))
    assert [t.tree.leaves() for t in trees] == [["a", "\ufffd"], ["b", "c"]]
    assert log.replaced_lines == 1 and log.n_skipped == 0
    assert log.examples == [f"{path}:1: invalid UTF-8 kept as U+FFFD (invalid start byte at byte 14)"]
    assert "1 line(s) with invalid UTF-8 kept with U+FFFD" in log.summary()
    assert eval_main(["--treebank", str(path), "--output", str(tmp_path / "out"), "--no-progress"]) == 0
    assert "invalid UTF-8" in capsys.readouterr().err


def test_eval_on_a_treebank_of_junk_is_one_clear_line(tmp_path, capsys):
    path = tmp_path / "junk.mrg"
    path.write_text("))) ((( \u2028 🙂\n")
    assert eval_main(["--treebank", str(path), "--output", str(tmp_path / "out"), "--no-progress"]) == 1
    assert capsys.readouterr().err == f"glomtext eval: error: {path}: no readable tree ({path}:1: unbalanced ')')\n"


# --------------------------------------------------------------------------- memory and determinism


def rss_mb() -> float:
    """This process's resident memory now (Linux)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


@pytest.mark.slow  # ~20-35 s
def test_100000_sentences_stream_in_flat_memory(tiny, tmp_path):
    """A 100,000-line file read lazily, islands written as JSON lines as they come: resident memory
    after 100,000 sentences is within 25 MB of what it was after 10,000 (a result kept per
    sentence would cost several hundred MB)."""
    import random

    rng = random.Random(0)
    vocab = "the cat sat on a mat new york is big city he shut noisy kids up ( ) , .".split()
    source = tmp_path / "in.txt"
    source.write_text("".join(" ".join(rng.choices(vocab, k=rng.randint(0, 8))) + "\n" for _ in range(100_000)))
    rss = {}

    def sentences(f):
        for n, line in enumerate(f, 1):
            yield line.rstrip("\n")
            if n in (10_000, 100_000):
                rss[n] = rss_mb()

    with source.open(encoding="utf-8") as f, (tmp_path / "out.jsonl").open("w", encoding="utf-8") as out:
        written = write_jsonl(extract_islands(*tiny, sentences(f), batch_size=256, device="cpu"), out)
    assert written == 100_000 and sum(1 for _ in (tmp_path / "out.jsonl").open()) == 100_000
    assert rss[100_000] - rss[10_000] < 25, rss


DRIVER = """
import sys
from glomtext.cli import main
model, out = sys.argv[1], sys.argv[2]
sentences = ["He shut the noisy kids up .", "new york is a big city", "e\\u0301 🙂 ((", "the cat sat on the mat ."]
assert main(["islands", "--model", model, "-f", "json", "-o", out + "/islands.jsonl", "-q", *sentences]) == 0
assert main(["eval", "--treebank", "nltk:treebank", "--max-sentences", "8", "--model", model, "--backbone", "none",
             "--units", "ptb_traces", "--output", out + "/eval", "--no-progress"]) == 0
"""


def test_same_inputs_give_identical_islands_and_scores_in_separate_processes(model_dir, tmp_path):
    outputs = []
    out = tmp_path / "run"  # the same folder both times: results.json quotes the command line
    for hash_seed in ("0", "1"):  # different str hashing: set or dict order must not leak into results
        out.mkdir()
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
               "NLTK_DATA": str(data_dir() / "nltk_data")}
        subprocess.run([sys.executable, "-c", DRIVER, model_dir, str(out)], env=env, check=True, capture_output=True, timeout=300)
        results = json.loads((out / "eval" / "results.json").read_text())
        results.pop("timing_s")
        outputs.append(((out / "islands.jsonl").read_bytes(), results))
        shutil.rmtree(out)
    assert outputs[0] == outputs[1]
    islands, results = outputs[0]
    assert islands.count(b"\n") == 4 and results["constituency"]["n_sentences"] == 8
