"""Pictures of islands (GLOM.md section 8): similarity per level, islands over iterations, trees.

Every picture function returns a ``matplotlib.figure.Figure`` built without pyplot, so nothing
needs a display and no global backend is touched (save with ``save(fig, path)``). Pictures are
deterministic: they show cosines and island memberships directly, no random projections.
``html_*`` build an HTML page of islands as coloured spans.
"""

from __future__ import annotations

import html
import unicodedata
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from nltk import Tree

from glomtext.islands import Island, SentenceIslands, find_islands_batch, word_trajectory
from glomtext.trees import to_ptb

SINGLETON_COLOUR = "#e4e4e4"


def printable(word: str) -> str:
    """A word safe to show: control characters as escapes (``\\x07``), everything else as is."""
    return "".join(repr(c)[1:-1] if unicodedata.category(c) == "Cc" else c for c in word)


def _label(word: str) -> str:
    """A word as a matplotlib label: printable, and ``$`` escaped so it is not read as math."""
    return printable(word).replace("$", r"\$")


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _check_words(words: Sequence[str], num_states: int) -> None:
    if not words:
        raise ValueError("nothing to draw: the sentence has no words")
    if len(words) != num_states:
        raise ValueError(f"{len(words)} words but states for {num_states}")


def _word_axis(ax, words: Sequence[str], axis: str = "x") -> None:
    size = max(5, min(10, 240 / max(len(words), 1)))
    labels = [_label(w) for w in words]
    if axis == "x":
        ax.set_xticks(range(len(words)), labels, rotation=90, fontsize=size)
    else:
        ax.set_yticks(range(len(words)), labels, fontsize=size)


def similarity_heatmaps(words: Sequence[str], states: torch.Tensor):
    """One W x W heatmap of cosine similarity per level, words on both axes (colour scale -1..1).

    states: (W, L, D) settled level embeddings of the words.
    """
    _check_words(words, states.shape[0])
    x = F.normalize(states.float(), dim=-1)
    sim = torch.einsum("ild,jld->lij", x, x).cpu()  # (L, W, W)
    L, W = sim.shape[0], sim.shape[1]
    side = max(2.5, 0.22 * W + 1.2)
    fig = _figure(side * L + 1, side + 0.8)
    axes = fig.subplots(1, L, squeeze=False)[0]
    for level, ax in enumerate(axes):
        image = ax.imshow(sim[level].numpy(), vmin=-1, vmax=1, cmap="RdBu_r", interpolation="nearest")
        ax.set_title(f"level {level}")
        _word_axis(ax, words, "x")
        if level == 0:
            _word_axis(ax, words, "y")
        else:
            ax.set_yticks([])
    fig.colorbar(image, ax=list(axes), label="cosine", shrink=0.8)
    return fig


def _island_colours():
    """Colours for islands (tab20 without its greys), after the singleton grey at index 0."""
    import matplotlib

    tab20 = [c for i, c in enumerate(matplotlib.colormaps["tab20"].colors) if i not in (14, 15)]
    return [SINGLETON_COLOUR] + [matplotlib.colors.to_hex(c) for c in tab20]


def islands_over_iterations(words: Sequence[str], all_states: torch.Tensor, **island_options):
    """Islands forming over time: one panel per level, one row per iteration, one cell per word.

    all_states: (T+1, W, L, D), the initial state then each iteration (``word_states(...,
    all_iterations=True)``). Cells of one island share a colour, chosen by the island's first word
    so an island keeps its colour while it grows; single-word islands are grey. island_options go
    to ``find_islands`` (method, threshold, nested).
    """
    from matplotlib.colors import ListedColormap

    _check_words(words, all_states.shape[1])
    T1, W, L, _ = all_states.shape
    colours = _island_colours()
    found = find_islands_batch(list(all_states), **island_options)  # [iteration][level][island]
    grid = torch.zeros(L, T1, W, dtype=torch.long)  # colour index of each cell
    for t, levels in enumerate(found):
        for level, islands in enumerate(levels):
            for isl in islands:
                if len(isl.members) > 1:
                    grid[level, t, list(isl.members)] = 1 + isl.members[0] % (len(colours) - 1)
    fig = _figure(max(3.0, 0.25 * W + 1.2) * L, 0.3 * T1 + 1.8)
    axes = fig.subplots(1, L, squeeze=False)[0]
    for level, ax in enumerate(axes):
        ax.imshow(grid[level].numpy(), cmap=ListedColormap(colours), vmin=0, vmax=len(colours) - 1,
                  interpolation="nearest", aspect="auto")
        ax.set_xticks([x - 0.5 for x in range(1, W)], minor=True)
        ax.set_yticks([y - 0.5 for y in range(1, T1)], minor=True)
        ax.grid(which="minor", color="white", linewidth=1)
        ax.tick_params(which="minor", length=0)
        ax.set_title(f"level {level}")
        _word_axis(ax, words, "x")
        ax.set_yticks(range(T1) if level == 0 else [])
    axes[0].set_ylabel("iteration")
    return fig


def draw_tree(ax, tree: Tree) -> None:
    """Draw ``tree`` on ``ax``: leaves in order on the bottom row, each node above its highest child,
    centred over its first and last child."""
    leaves = iter(range(len(tree.leaves())))
    size = max(5, min(10, 200 / max(len(tree.leaves()), 1)))
    box = {"boxstyle": "round,pad=0.2", "facecolor": "white", "edgecolor": "#888888"}

    def place(node) -> tuple[float, float]:
        if not isinstance(node, Tree):
            x = float(next(leaves))
            ax.text(x, 0, _label(node), ha="center", va="top", fontsize=size, rotation=90 if len(tree.leaves()) > 15 else 0)
            return x, 0.0
        kids = [place(child) for child in node]
        if not kids:  # an empty tree
            return 0.0, 0.0
        x, y = (kids[0][0] + kids[-1][0]) / 2, 1 + max(k[1] for k in kids)
        for kx, ky in kids:
            ax.plot([x, kx], [y, ky], color="#555555", linewidth=1)
        ax.text(x, y, _label(str(node.label())), ha="center", va="center", fontsize=size, bbox=box)
        return x, y

    _, height = place(tree)
    ax.set_xlim(-0.7, max(len(tree.leaves()) - 0.3, 0.7))
    ax.set_ylim(-1.5, height + 0.6)
    ax.axis("off")


def tree_figure(tree: Tree, gold: Tree | None = None):
    """The induced tree, and the gold tree next to it when one is given."""
    trees = [("induced", tree)] + ([("gold", gold)] if gold is not None else [])
    depth = max(t.height() for _, t in trees)
    fig = _figure(sum(max(3.0, 0.55 * len(t.leaves())) for _, t in trees), 0.5 * depth + 1.5)
    axes = fig.subplots(1, len(trees), squeeze=False)[0]
    for ax, (name, t) in zip(axes, trees):
        draw_tree(ax, t)
        ax.set_ylim(-1.5, depth - 1 + 0.6)  # the same scale for both trees: leaves on one line
        ax.set_title(name)
    return fig


def trajectory_figure(words: Sequence[str], all_states: torch.Tensor, word: int):
    """How one word's vectors move with context (GLOM.md section 6).

    Left: cosine of the word's vector at each level to its own initial vector, per iteration.
    Then one panel per level: cosine to every word of the sentence at each iteration.
    """
    _check_words(words, all_states.shape[1])
    to_initial, to_words = word_trajectory(all_states, word)  # (T+1, L), (T+1, L, W)
    T1, L, W = to_words.shape
    fig = _figure(4 + max(3.0, 0.25 * W + 1.2) * L, 0.25 * T1 + 2.2)
    axes = fig.subplots(1, L + 1, squeeze=False)[0]
    for level in range(L):
        axes[0].plot(range(T1), to_initial[:, level].numpy(), marker="o", label=f"level {level}")
    axes[0].set(xlabel="iteration", ylabel="cosine to initial vector", ylim=(-1.05, 1.05),
                title=f'"{_label(words[word])}" (word {word})')
    axes[0].legend(fontsize=7)
    for level in range(L):
        ax = axes[level + 1]
        image = ax.imshow(to_words[:, level].numpy(), vmin=-1, vmax=1, cmap="RdBu_r", interpolation="nearest", aspect="auto")
        ax.set_title(f"level {level}: cosine to each word")
        _word_axis(ax, words, "x")
        ax.set_yticks(range(T1) if level == 0 else [])
    axes[1].set_ylabel("iteration")
    fig.colorbar(image, ax=list(axes[1:]), label="cosine", shrink=0.8)
    return fig


def save(fig, path: str | Path, dpi: int = 100) -> Path:
    """Write a figure (format from the suffix); missing glyphs (emoji) are drawn as boxes, silently."""
    path = Path(path)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Glyph .* missing from")
        fig.savefig(path, dpi=dpi)
    return path


# ------------------------------------------------------------------------------------------------
# HTML

_STYLE = """
body { font-family: sans-serif; margin: 2em; }
section { margin-bottom: 2.5em; }
p.text { font-size: 1.1em; font-weight: bold; }
table { border-collapse: collapse; }
th { text-align: right; padding-right: 1em; color: #666; font-weight: normal; }
td { padding: 0.25em 0; line-height: 2; }
.island { padding: 0.1em 0.3em; border-radius: 0.3em; }
.island.disc { border: 2px dashed #444; }
.island.hl { outline: 2px solid #000; }
sup { font-size: 0.7em; }
pre { background: #f6f6f6; padding: 0.5em; white-space: pre-wrap; }
"""

_SCRIPT = """
document.querySelectorAll('.island').forEach(function (s) {
  function mark(on) { document.querySelectorAll('[data-island="' + s.dataset.island + '"]')
                        .forEach(function (t) { t.classList.toggle('hl', on); }); }
  s.addEventListener('mouseenter', function () { mark(true); });
  s.addEventListener('mouseleave', function () { mark(false); });
});
"""


def html_header(title: str = "glomtext islands") -> str:
    t = html.escape(title)
    return f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{t}</title><style>{_STYLE}</style></head>\n<body><h1>{t}</h1>\n'


def html_footer() -> str:
    return f"<script>{_SCRIPT}</script>\n</body></html>\n"


def html_sentence(result: SentenceIslands, sentence_id: int | str = "") -> str:
    """One sentence: a row per level (top first) of its words, islands as coloured spans.

    Each island of more than one word has its own colour; the fragments of a discontinuous island
    share colour and number, have a dashed border, and light up together under the mouse.
    """
    rows = []
    for level, islands in reversed(list(enumerate(result.islands))):
        cells = _html_level(result.words, islands, f"{sentence_id}-{level}")
        rows.append(f"<tr><th>level {level}</th><td>{cells}</td></tr>")
    trees = ""
    if result.words:
        trees = (f"<pre>distance tree: {html.escape(to_ptb(result.distance_tree()))}\n"
                 f"island tree:   {html.escape(to_ptb(result.island_tree()))}</pre>")
    body = "\n".join(rows) if rows and result.words else "<tr><td>(no words)</td></tr>"
    return f'<section><p class="text">{html.escape(printable(result.sentence))}</p>\n<table>\n{body}\n</table>\n{trees}</section>\n'


def _html_level(words: Sequence[str], islands: Sequence[Island], prefix: str) -> str:
    spans = {}  # first word of a fragment -> its html
    multi = [isl for isl in islands if len(isl.members) > 1]
    for k, isl in enumerate(multi, 1):
        hue = (k * 137.5) % 360  # golden-angle hues: neighbouring numbers get distant colours
        disc = "" if isl.contiguous else " disc"
        tip = f"island {k}, score {isl.score:.3f}" + ("" if isl.contiguous else ", discontinuous")
        sup = f"<sup>{k}</sup>" if disc else ""
        for frag in isl.fragments:
            text = html.escape(" ".join(printable(words[i]) for i in frag))
            spans[frag[0]] = (len(frag), f'<span class="island{disc}" data-island="{prefix}-{k}" '
                                         f'style="background: hsl({hue:.0f}, 70%, 85%)" title="{tip}">{text}{sup}</span>')
    out, w = [], 0
    while w < len(words):
        if w in spans:
            n, span = spans[w]
            out.append(span)
            w += n
        else:
            out.append(html.escape(printable(words[w])))
            w += 1
    return " ".join(out)


def islands_html(results: Iterable[SentenceIslands], title: str = "glomtext islands") -> str:
    """A whole HTML page for some sentences."""
    return html_header(title) + "".join(html_sentence(r, i) for i, r in enumerate(results)) + html_footer()
