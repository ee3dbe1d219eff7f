"""The evaluation report: a console table, ``report.md`` (tables) and a few matplotlib plots."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from glomtext.evaluation.constituency import is_preterminal
from glomtext.evaluation.units import SCORE_DEFINITIONS, UnitScorer

SYSTEM_ORDER = ("glomtext", "glomtext_untrained", "glomtext_right_skew", "glomtext_untrained_right_skew", "backbone_distance",
                "right_branching", "left_branching", "balanced", "random")
TOP_LABELS = 8  # gold labels shown in the recall table
EXAMPLE_LENGTHS = (6, 12)  # examples.png draws the first three sentences of these lengths (in words)


def _f(x) -> str:
    return "-" if x is None else f"{x:.1f}"


def _table(header: Sequence[str], rows: Sequence[Sequence]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _systems(constituency: dict) -> list[str]:
    return [s for s in SYSTEM_ORDER if s in constituency["systems"]]


def system_label(name: str, r: dict) -> str:
    """How a system is named in the report (with the read-out options that shaped its trees)."""
    if name.endswith("_right_skew"):
        return f"{system_label(name.removesuffix('_right_skew'), r)} + right-skew bias {r['right_skew']:g} (a branching-direction prior)"
    if name == "random":
        return f"random (mean of {len(r['seeds'])} seeds, sd {r['sentence_f1_std']:.1f})"
    if name == "glomtext":
        shaped = [f"levels {', '.join(map(str, r['tree_levels']))}"] * (r.get("tree_levels", "all") != "all")
        shaped += [f"the {r['tree_readout']} read-out"] * (r.get("tree_readout", "cosine") != "cosine")
        return f"glomtext (trees from {'; '.join(shaped)})" if shaped else name
    if name == "glomtext_untrained":
        return f"glomtext untrained (same config and read-out, fresh weights, seed {r['seed']})"
    if name == "backbone_distance":
        return f"backbone_distance (best: layer {r['layer']})"
    return name


def system_rows(constituency: dict) -> list[list[str]]:
    """One row per system: sentence/corpus F1 (all and <= 10 words) and the EVALB-style F1."""
    rows = []
    for name in _systems(constituency):
        r = constituency["systems"][name]
        rows.append([system_label(name, r), _f(r["sentence_f1"]), _f(r["corpus_f1"]), _f(r["sentence_f1_le10"]), _f(r["corpus_f1_le10"]),
                     _f(r.get("evalb_unlabeled", {}).get("f1"))])
    return rows


SYSTEM_HEADER = ["system", "sentence F1", "corpus F1", "sentence F1 <=10", "corpus F1 <=10", "EVALB-style unlabeled F1"]
UNIT_HEADER = ["system", "units", "n", "exact (any level)", "contained (any level)", "AUC (best level)"]


def unit_rows(units: dict) -> list[list[str]]:
    """Per system and group (discontinuous/contiguous): recovery shares and the best-level AUC."""
    rows = []
    for name, r in units["systems"].items():
        for group in UnitScorer.GROUPS:
            g = r[group]
            auc = None if g["auc_best_level"] is None else g["auc_by_level"][g["auc_best_level"]]
            rows.append([name, group, g["n_units"], _f(g["exact_any_level"]), _f(g["contained_any_level"]),
                         f"{_f(auc)} (level {g['auc_best_level']})" if auc is not None else "-"])
    return rows


def console_summary(results: dict) -> str:
    """The tables printed at the end of ``glomtext eval``."""
    parts = []
    if "constituency" in results:
        c = results["constituency"]
        parts.append(f"Constituency, {c['n_sentences']} sentences (Kim et al. 2019 protocol; F1 in %)")
        parts.append(_table(SYSTEM_HEADER, system_rows(c)))
    for kind, u in results.get("units", {}).items():
        counts = u["counts"]
        parts.append(f"Units {kind}: {counts['sentences']} sentences, {counts['discontinuous']} discontinuous, {counts['contiguous']} contiguous")
        if u["systems"]:
            parts.append(_table(UNIT_HEADER, unit_rows(u)))
    return "\n\n".join(parts)


def markdown_report(results: dict) -> str:
    """All tables of ``results`` as Markdown, with the protocols and score definitions."""
    out = ["# glomtext evaluation", "", f"Command: `{results['config']['command']}`", ""]
    if "constituency" in results:
        out += _constituency_markdown(results["constituency"])
    if results.get("units"):
        out += ["## Discontinuous units", "", SCORE_DEFINITIONS, ""]
        for kind, u in results["units"].items():
            out += _units_markdown(kind, u)
    return "\n".join(out) + "\n"


def _constituency_markdown(c: dict) -> list[str]:
    systems = _systems(c)
    out = [f"## Constituency ({c['n_sentences']} sentences, {c['n_sentences_le10']} of at most 10 words)", "",
           f"**Protocol.** {c['protocol']}", "", f"**EVALB-style.** {c['evalb_protocol']}", "",
           _table(SYSTEM_HEADER, system_rows(c)), ""]
    if "backbone_distance" in c["systems"]:
        b = c["systems"]["backbone_distance"]
        out += [f"### Backbone distance trees per layer ({b['backbone']}; layer 0 = embedding output)", "",
                "The best layer is chosen on this evaluation set, so its score is optimistic.", "",
                _table(["layer", "sentence F1", "corpus F1", "sentence F1 <=10", "EVALB-style unlabeled F1"],
                       [[r["layer"], _f(r["sentence_f1"]), _f(r["corpus_f1"]), _f(r["sentence_f1_le10"]), _f(r["evalb_unlabeled_f1"])] for r in b["per_layer"]]), ""]
    first = c["systems"][systems[0]]
    labels = list(first["label_recall"])[:TOP_LABELS]
    out += ["### Recall per gold label", "",
            _table(["system"] + [f"{lab} (n={first['label_recall'][lab]['n']})" for lab in labels],
                   [[s] + [_f(c["systems"][s]["label_recall"].get(lab, {}).get("recall")) for lab in labels] for s in systems]), ""]
    bins = list(first["f1_by_length"])
    out += ["### Sentence F1 by sentence length", "",
            _table(["system"] + [f"{b} (n={first['f1_by_length'][b]['n']})" for b in bins],
                   [[s] + [_f(c["systems"][s]["f1_by_length"][b]["sentence_f1"]) for b in bins] for s in systems]), ""]
    if "glomtext" in c["systems"]:
        out += ["### glomtext islands per level against gold constituents", "",
                f"Islands ({island_settings(c['systems']['glomtext'].get('islands'))}) of 2+ words; gold constituents of 2+ words, "
                "whole sentence included. Precision: share of islands that are a gold constituent; recall: share of "
                "constituents that are an island.", "",
                _table(["level", "islands", "precision", "recall", "mean size", "gold mean size", "discontinuous %"],
                       [[r["level"], r["n_islands"], _f(r["precision"]), _f(r["recall"]), _f(r["mean_size"]), _f(r["gold_mean_size"]), _f(r["discontinuous"])]
                        for r in c["systems"]["glomtext"]["islands_by_level"]]), ""]
    return out


def _units_markdown(kind: str, u: dict) -> list[str]:
    counts = u["counts"]
    out = [f"### {kind} ({u['path']})", "",
           f"{counts['sentences']} sentences; {counts['discontinuous']} discontinuous and {counts['contiguous']} contiguous units; "
           f"skipped: {u['read']['skipped'] or 'none'}" + (f"; notes: {u['notes']}" if u["notes"] else ""), "",
           "Discontinuous units by label: " + (", ".join(f"{k} {v}" for k, v in counts["by_label"].items()) or "none"), ""]
    if not u["systems"]:
        return out + ["(no system to score: give --model or --backbone)", ""]
    out += [_table(UNIT_HEADER, unit_rows(u)), ""]
    for name, r in u["systems"].items():
        d, g = r["discontinuous"], r["contiguous"]
        rows = [[level, _f(d["exact_by_level"][level]), _f(d["contained_by_level"][level]), _f(_at(d["auc_by_level"], level)),
                 _f(g["exact_by_level"][level]), _f(g["contained_by_level"][level]), _f(_at(g["auc_by_level"], level)),
                 _f(r["disc_bracket"]["by_level"][level]["f1"])] for level in range(len(d["exact_by_level"]))]
        rows.append(["any", _f(d["exact_any_level"]), _f(d["contained_any_level"]), "", _f(g["exact_any_level"]), _f(g["contained_any_level"]), "",
                     _f(r["disc_bracket"]["any_level"]["f1"])])
        out += [f"{name} per level ({r['levels']}; islands: {island_settings(r.get('islands'))}):", "",
                _table(["level", "disc. exact", "disc. contained", "disc. AUC", "contig. exact", "contig. contained", "contig. AUC", "disc. bracket F1"], rows), ""]
    return out


def island_settings(options: dict | None) -> str:
    """How islands were found, in words: 'average linkage, cosine threshold 0.9'."""
    if not options:  # results written before the options were recorded
        return "library defaults"
    threshold = options.get("threshold")
    per_level = isinstance(threshold, (list, tuple))
    text = f"{options.get('method', 'average')} linkage, cosine threshold" + (
        f"s {', '.join(f'{t:.3g}' for t in threshold)} per level" if per_level else f" {threshold:.3g}")
    return text + (", nested" if options.get("nested") else "")


def _at(values: list, i: int):
    return values[i] if i < len(values) else None


# ------------------------------------------------------------------------------------- plots


def plot_f1_by_length(constituency: dict, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name in _systems(constituency):
        bins = constituency["systems"][name]["f1_by_length"]
        ax.plot(list(bins), [b["sentence_f1"] for b in bins.values()], marker="o", label=name)
    ax.set(xlabel="sentence length (words)", ylabel="sentence F1 (%)", title="Sentence F1 by length")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_island_levels(levels: list[dict], path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.5))
    x = [r["level"] for r in levels]
    a.plot(x, [r["precision"] for r in levels], marker="o", label="precision")
    a.plot(x, [r["recall"] for r in levels], marker="o", label="recall")
    a.set(xlabel="level", ylabel="%", title="Islands as gold constituents")
    a.legend(fontsize=8)
    b.plot(x, [r["mean_size"] for r in levels], marker="o", label="islands (2+ words)")
    b.axhline(levels[0]["gold_mean_size"], color="gray", linestyle="--", label="gold constituents")
    b.set(xlabel="level", ylabel="mean size (words)", title="Island size")
    b.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def draw_tree(ax, tree, title: str) -> None:
    """A tree on a matplotlib axis: words along the bottom, each node above its children's mean x.
    POS tags are drawn as part of their word."""
    words: list[str] = []

    def place(node) -> tuple[float, int]:
        if isinstance(node, str) or is_preterminal(node):
            words.append(node if isinstance(node, str) else node[0])
            return len(words) - 1, 0
        kids = [place(child) for child in node]
        x, y = sum(k[0] for k in kids) / len(kids), 1 + max(k[1] for k in kids)
        for kx, ky in kids:
            ax.plot([x, kx], [y, ky], color="tab:blue", lw=1)
        if node.label() != "X":  # the label of unlabeled predicted trees
            ax.text(x, y, node.label(), ha="center", va="bottom", fontsize=7)
        return x, y

    place(tree)
    for i, w in enumerate(words):
        ax.text(i, -0.2, w, ha="right", va="top", rotation=45, fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.set_xlim(-1, len(words))
    ax.axis("off")


def plot_examples(examples: list, path: Path, titles: dict[str, str]) -> None:
    """Gold and predicted trees of a few sentences (``SentenceTrees``), one row each; ``titles`` renames systems."""
    import matplotlib.pyplot as plt

    n_cols = 1 + max(len(e.predicted) for e in examples)
    fig, axes = plt.subplots(len(examples), n_cols, figsize=(4 * n_cols, 3.2 * len(examples)), squeeze=False)
    for row, ex in zip(axes, examples):
        draw_tree(row[0], ex.gold, f"gold ({ex.source.rsplit('/', 1)[-1]})")
        for ax, (name, tree) in zip(row[1:], ex.predicted.items()):
            draw_tree(ax, tree, titles.get(name, name))
        for ax in row[1 + len(ex.predicted):]:
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(results: dict, trees: list, output: Path) -> list[Path]:
    """Write results.json, report.md, the plots and (given the sentences' ``SentenceTrees``) trees.jsonl
    into ``output``; returns the paths written."""
    import matplotlib

    matplotlib.use("Agg")
    output.mkdir(parents=True, exist_ok=True)
    written = [output / "results.json", output / "report.md"]
    written[0].write_text(json.dumps(results, indent=1) + "\n")
    written[1].write_text(markdown_report(results))
    if "constituency" in results:
        c = results["constituency"]
        plot_f1_by_length(c, output / "f1_by_length.png")
        written.append(output / "f1_by_length.png")
        if "glomtext" in c["systems"]:
            plot_island_levels(c["systems"]["glomtext"]["islands_by_level"], output / "islands_by_level.png")
            written.append(output / "islands_by_level.png")
    if trees:
        with open(output / "trees.jsonl", "w", encoding="utf-8") as f:
            f.writelines(json.dumps(t.to_dict(), ensure_ascii=False) + "\n" for t in trees)
        written.append(output / "trees.jsonl")
    lo, hi = EXAMPLE_LENGTHS
    examples = [t for t in trees if lo <= len(t.words) <= hi][:3]
    if examples:
        layer = results["constituency"]["systems"].get("backbone_distance", {}).get("layer")
        plot_examples(examples, output / "examples.png", {"backbone_distance": f"backbone_distance (layer {layer})"})
        written.append(output / "examples.png")
    return written
