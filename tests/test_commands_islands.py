"""`glomtext islands` on a tiny random model saved to disk: formats, files, bad input."""

from __future__ import annotations

import json

import pytest
from nltk import Tree

from glomtext import cli
from glomtext.commands.islands import main, render_level
from glomtext.islands import Island
from support import save_tiny_model


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "tiny"
    save_tiny_model(path)
    return str(path)


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


SHUT_UP = ["He", "shut", "the", "noisy", "kids", "up"]
LEVEL = [Island(1, (0,), 1.0), Island(1, (1, 5), 0.9), Island(1, (2, 3, 4), 0.95)]


def test_render_level_plain_marks_link_discontinuous_fragments():
    assert render_level(SHUT_UP, LEVEL, colour=False) == [
        "He [shut]1 [the noisy kids]2 [up]1",
        "1: shut ... up  (score 0.900, discontinuous)",
        "2: the noisy kids  (score 0.950)",
    ]


def test_render_level_colour_numbers_only_discontinuous_islands():
    line, legend1, legend2 = render_level(SHUT_UP, LEVEL, colour=True)
    assert line == "He \033[1;31mshut1\033[0m \033[1;32mthe noisy kids\033[0m \033[1;31mup1\033[0m"
    assert legend1.startswith("\033[31m1: shut ... up") and legend2.startswith("\033[32m2: the noisy kids")


def test_text_view_of_one_sentence(model_dir, capsys):
    code, out, err = run(capsys, "--model", model_dir, "He shut the noisy kids up.", "x\x07y 🙂")
    assert code == 0 and err == ""
    assert out.startswith("He shut the noisy kids up.\n  level 2  ")
    assert out.count("  level 0  ") == 2 and out.count("distance tree:") == 2 and out.count("island tree:") == 2
    assert "\033[" not in out  # captured output is not a terminal: plain marks
    assert "x\\x07y" in out and "\x07" not in out and "🙂" in out  # control characters are shown escaped


def test_json_lines_hold_islands_and_parseable_trees(model_dir, capsys):
    sentences = ["He shut the noisy kids up.", "   ", "Ünïcödé (brackets) 🙂"]
    code, out, _ = run(capsys, "--model", model_dir, "--format", "json", "--iterations", "2", *sentences)
    assert code == 0
    objects = [json.loads(line) for line in out.splitlines()]
    assert [o["sentence"] for o in objects] == sentences
    assert objects[1]["words"] == [] and objects[1]["trees"] == {"distance": None, "islands": None}
    for o in (objects[0], objects[2]):
        assert o["levels"] == 3 and len(o["islands"]) == 3
        for level, islands in enumerate(o["islands"]):
            assert sorted(m for isl in islands for m in isl["members"]) == list(range(len(o["words"])))
            for isl in islands:
                assert isl["level"] == level and isl["words"] == [o["words"][m] for m in isl["members"]]
                assert 0 < isl["score"] <= 1.0 + 1e-6 and isinstance(isl["contiguous"], bool)
        for tree in o["trees"].values():
            leaves = Tree.fromstring(tree).leaves()
            assert [w.replace("-LRB-", "(").replace("-RRB-", ")") for w in leaves] == o["words"]


def test_input_file_to_output_file_counts_undecodable_lines(model_dir, tmp_path, capsys):
    source = tmp_path / "in.txt"
    source.write_bytes(b"the cat sat on the mat .\n\nbad \xff byte\nnew york\n")
    target = tmp_path / "out.ptb"
    code, out, err = run(capsys, "--model", model_dir, "-i", str(source), "-o", str(target), "-f", "ptb", "-q", "--batch-size", "3")
    assert code == 0 and out == ""
    lines = target.read_text(encoding="utf-8").split("\n")
    assert len(lines) == 5 and lines[1] == "" and lines[4] == ""  # one line per input line, empty stays empty
    assert Tree.fromstring(lines[0]).leaves() == "the cat sat on the mat .".split()
    assert Tree.fromstring(lines[2]).leaves() == ["bad", "\ufffd", "byte"]
    assert "1 input line(s) were not valid UTF-8 (lines 3)" in err and "wrote 4 sentence(s)" in err


def test_html_and_island_tree_formats(model_dir, capsys):
    code, out, _ = run(capsys, "--model", model_dir, "-f", "html", "--nested", "the cat sat", "new york")
    assert code == 0 and out.startswith("<!DOCTYPE html>") and out.count("<section>") == 2 and out.endswith("</html>\n")
    code, out, _ = run(capsys, "--model", model_dir, "-f", "ptb", "--tree", "islands", "--threshold", "0.5,0.5,0.5", "the cat sat")
    assert code == 0 and Tree.fromstring(out).leaves() == ["the", "cat", "sat"]


def test_sentences_longer_than_the_model_are_settled_in_windows(tmp_path, capsys):
    save_tiny_model(tmp_path / "short", max_position_embeddings=8)  # 6 pieces per window
    sentence = " ".join(["the cat sat on the mat ."] * 2)  # 14 one-piece words
    code, out, _ = run(capsys, "--model", str(tmp_path / "short"), "-f", "json", sentence)
    result = json.loads(out)
    assert code == 0 and result["windows"] == 3 and len(result["words"]) == 14


def test_dispatch_through_the_glomtext_command(model_dir, capsys):
    assert cli.main(["islands", "--model", model_dir, "-f", "ptb", "the cat"]) == 0
    assert Tree.fromstring(capsys.readouterr().out).leaves() == ["the", "cat"]


@pytest.mark.parametrize("argv, message", [
    (["--model", "{tmp}/missing", "x"], "model directory '{tmp}/missing' not found"),
    (["--model", "{tmp}", "x"], "holds no config.json"),
    (["--model", "{tmp}/bert", "x"], "holds a 'bert' model, not a glomtext one"),
    (["--model", "{model}"], "give sentences as arguments or --input FILE"),
    (["--model", "{model}", "-i", "{tmp}/nope.txt"], "input file '{tmp}/nope.txt' not found"),
    (["--model", "{model}", "--threshold", "0.9,0.8", "x"], "--threshold takes 1 value or one per level (3), got 2"),
    (["--model", "{model}", "--iterations", "-1", "x"], "--iterations must be >= 0"),
    (["--model", "{model}", "--device", "nonsense", "x"], "is not a torch device"),
    (["--model", "{model}", "--link-choice", "open", "x"], "link_choice: the model {model} has no neighbour links"),
])
def test_bad_input_is_one_clear_line_and_exit_code_2(model_dir, tmp_path, capsys, argv, message):
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text('{"model_type": "bert"}')
    fill = {"tmp": str(tmp_path), "model": model_dir}
    code, out, err = run(capsys, *[a.format(**fill) for a in argv])
    assert code == 2 and out == "" and "Traceback" not in err
    assert err.startswith("glomtext islands: error: ") and message.format(**fill) in err and err.count("\n") == 1
