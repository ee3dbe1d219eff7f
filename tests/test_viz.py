"""Pictures: real PNG files from planted states, tree layout, HTML spans, and `glomtext viz`."""

from __future__ import annotations

import struct

import pytest
import torch
from nltk import Tree

from glomtext import viz
from glomtext.commands.viz import main, word_index
from glomtext.islands import SentenceIslands
from support import PLANTED, SHUT_UP, plant, save_tiny_model

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_size(path) -> tuple[int, int]:
    """(width, height) from a PNG file's header; fails if it is not a PNG."""
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def settling(states: torch.Tensor, steps: int = 3) -> torch.Tensor:
    """(T+1, W, L, D): states that move from noise (iteration 0) to ``states`` (the last)."""
    noise = torch.randn(states.shape, generator=torch.Generator().manual_seed(0))
    return torch.stack([(1 - t / steps) * noise + (t / steps) * states for t in range(steps + 1)])


WORDS = "He shut the noisy kids up".split()
STATES = plant(SHUT_UP, 6, noise=0.01)  # (W=6, L=4, D=32)


@pytest.mark.parametrize("make", [
    lambda: viz.similarity_heatmaps(WORDS, STATES),
    lambda: viz.islands_over_iterations(WORDS, settling(STATES), threshold=0.8),
    lambda: viz.tree_figure(Tree.fromstring("(X (X He shut) (X the (X noisy (X kids up))))"), PLANTED),
    lambda: viz.trajectory_figure(WORDS, settling(STATES), 1),
])
def test_pictures_are_non_empty_deterministic_png_files(tmp_path, make):
    first, second = viz.save(make(), tmp_path / "a.png"), viz.save(make(), tmp_path / "b.png")
    width, height = png_size(first)
    assert width >= 200 and height >= 150 and first.stat().st_size > 5000
    assert first.read_bytes() == second.read_bytes()  # no randomness in the picture


def test_heatmap_axes_carry_the_words_and_levels():
    fig = viz.similarity_heatmaps(["a$", "b\x07"], STATES[:2])
    first = fig.axes[0]
    assert [t.get_text() for t in first.get_xticklabels()] == [r"a\$", "b\\x07"]  # no math mode, no raw control chars
    assert [ax.get_title() for ax in fig.axes[:4]] == ["level 0", "level 1", "level 2", "level 3"]
    assert first.images[0].get_array().shape == (2, 2)


def test_islands_over_iterations_colours_islands_by_their_first_word():
    fig = viz.islands_over_iterations(WORDS, settling(STATES), threshold=0.8)
    level1 = fig.axes[1].images[0].get_array()  # (T+1, W) colour index per cell
    assert level1.shape == (4, 6)
    assert level1[-1].tolist() == [0, 2, 3, 3, 3, 2]  # He alone (grey), shut..up share a colour, the noisy kids another


def test_draw_tree_puts_leaves_in_order_and_parents_over_children():
    fig = viz.tree_figure(Tree.fromstring("(S (NP the cat) sat)"))
    texts = {t.get_text(): t.get_position() for t in fig.axes[0].texts}
    assert [texts[w] for w in ("the", "cat", "sat")] == [(0.0, 0), (1.0, 0), (2.0, 0)]
    assert texts["NP"] == (0.5, 1) and texts["S"] == (1.25, 2)  # centred over its first and last child


def test_empty_sentences_are_refused_with_a_clear_error():
    with pytest.raises(ValueError, match="no words"):
        viz.similarity_heatmaps([], torch.zeros(0, 2, 4))
    with pytest.raises(ValueError, match="2 words but states for 6"):
        viz.similarity_heatmaps(["a", "b"], STATES)


def test_html_links_the_fragments_of_a_discontinuous_island():
    words = ["<b>", "shut", "the", "noisy", "kids", "up"]
    result = SentenceIslands.from_states(" ".join(words), words, STATES, nested=True)
    page = viz.islands_html([result])
    level1 = [row for row in page.splitlines() if row.startswith("<tr><th>level 1")][0]
    assert level1.count('class="island disc" data-island="0-1-1"') == 2  # shut ... up, both fragments
    assert ">shut<sup>1</sup></span>" in level1 and ">up<sup>1</sup></span>" in level1
    assert 'class="island" data-island="0-1-2"' in level1 and ">the noisy kids</span>" in level1
    assert "&lt;b&gt;" in page and "<b>" not in page  # words are escaped


def test_word_index_accepts_positions_and_words():
    words = ["The", "bank", "the", "river"]
    assert [word_index(words, w) for w in ("1", "-1", "the", "BANK", "9", "shore")] == [1, -1, 2, 1, None, None]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "tiny"
    save_tiny_model(path)
    return str(path)


def test_viz_command_writes_pictures_and_html(model_dir, tmp_path, capsys):
    out = tmp_path / "pics"
    code = main(["--model", model_dir, "--out", str(out), "--word", "bank", "--gold", "(S (NP the bank) (VP closed))",
                 "--gold", "(S (NP it) (VP rained))", "the bank closed", "it rained"])
    stdout, stderr = capsys.readouterr()
    assert code == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["000-heatmap.png", "000-iterations.png", "000-trajectory.png", "000-tree.png",
                     "001-heatmap.png", "001-iterations.png", "001-tree.png", "islands.html"]
    assert all(png_size(out / n)[0] > 100 for n in names if n.endswith(".png"))
    assert stdout.count("\n") == len(names) and "--word 'bank' not found in 1 sentence(s)" in stderr


def test_viz_command_takes_sentences_from_gold_trees_and_skips_empty_ones(model_dir, tmp_path, capsys):
    gold = tmp_path / "gold.mrg"
    gold.write_text("(S (NP the cat) (VP sat))\n\n(S (NP it) (VP rained))\n", encoding="utf-8")
    assert main(["--model", model_dir, "--out", str(tmp_path / "a"), "--gold-file", str(gold), "--pictures", "tree"]) == 0
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["000-tree.png", "001-tree.png"]
    assert main(["--model", model_dir, "--out", str(tmp_path / "b"), "--pictures", "heatmap", "the cat", " "]) == 0
    assert "skipped 1 empty sentence(s)" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--gold", "(S (NP the cat"], "--gold #1: not a bracketed tree"),
    (["--gold", "(S a b)", "a"], "sentence 0 has 1 words but its gold tree 2 leaves"),
    (["--pictures", "heatmap,movie", "a"], "--pictures: unknown ['movie']"),
])
def test_viz_command_bad_input(model_dir, tmp_path, capsys, argv, message):
    assert main(["--model", model_dir, "--out", str(tmp_path)] + argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("glomtext viz: error: ") and message in err and err.count("\n") == 1
