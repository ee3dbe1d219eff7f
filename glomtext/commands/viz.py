"""``glomtext viz``: picture files for sentences.

    glomtext viz --model runs/tiny --out pics "He shut the noisy kids up." --word shut
    glomtext viz --model runs/tiny --out pics --gold "(S (NP the cat) (VP sat))"

For sentence number i it writes ``{i:03d}-heatmap.png`` (cosine similarity per level),
``{i:03d}-iterations.png`` (islands forming over the iterations), ``{i:03d}-tree.png`` (the induced
tree, next to the gold tree when given) and, with ``--word``, ``{i:03d}-trajectory.png`` (how that
word's vectors move with context); plus one ``islands.html`` for all sentences. With gold trees
and no sentences, the sentences are the gold trees' leaves. Empty sentences are skipped and counted.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nltk import Tree

from glomtext import viz
from glomtext.commands.islands import UsageError, add_model_arguments, check_model_arguments, island_options, load
from glomtext.islands import SentenceIslands, word_states

PROG = "glomtext viz"
PICTURES = ("heatmap", "iterations", "tree", "trajectory", "html")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Pictures of islands: similarity per level, islands over "
                                                       "iterations, induced vs gold trees, a word's trajectory.")
    add_model_arguments(p)
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the picture files (created if needed)")
    p.add_argument("--gold", action="append", default=[], metavar="PTB", help="a gold tree per sentence (repeatable)")
    p.add_argument("--gold-file", metavar="FILE", help="gold trees, one PTB tree per line")
    p.add_argument("--word", help="draw the trajectory of this word (an index, or the word's first occurrence)")
    p.add_argument("--tree", choices=("distance", "islands"), default="distance", help="which induced tree to draw")
    p.add_argument("--pictures", default="heatmap,iterations,tree,trajectory,html",
                   help=f"comma-separated subset of {','.join(PICTURES)} (default: all)")
    p.add_argument("--image-format", choices=("png", "svg", "pdf"), default="png")
    return p


def read_gold(args: argparse.Namespace) -> list[Tree]:
    """Gold trees from --gold and --gold-file, with the bad one named on error."""
    sources = [(f"--gold #{k}", s) for k, s in enumerate(args.gold, 1)]
    if args.gold_file:
        try:
            with open(args.gold_file, encoding="utf-8") as f:
                sources += [(f"{args.gold_file}:{n}", line) for n, line in enumerate(f, 1) if line.strip()]
        except (OSError, UnicodeDecodeError) as e:
            raise UsageError(f"cannot read {args.gold_file!r}: {e}") from None
    trees = []
    for where, text in sources:
        try:
            trees.append(Tree.fromstring(text))
        except ValueError as e:
            raise UsageError(f"{where}: not a bracketed tree ({str(e).splitlines()[0]})") from None
    return trees


def sentences_and_gold(args: argparse.Namespace) -> tuple[list[list[str]], list[Tree | None]]:
    gold = read_gold(args)
    check_model_arguments(args, need_sentences=not gold)
    if not args.sentences and not args.input:
        return [t.leaves() for t in gold], list(gold)
    sentences = [s.split() for s in args.sentences]
    if args.input:
        stream = sys.stdin if args.input == "-" else open(args.input, encoding="utf-8", errors="replace")
        with stream:
            sentences += [line.split() for line in stream]
    if gold and len(gold) != len(sentences):
        raise UsageError(f"{len(gold)} gold trees for {len(sentences)} sentences")
    for k, (words, tree) in enumerate(zip(sentences, gold)):
        if len(tree.leaves()) != len(words):
            raise UsageError(f"sentence {k} has {len(words)} words but its gold tree {len(tree.leaves())} leaves")
    return sentences, gold or [None] * len(sentences)


def word_index(words: list[str], word: str) -> int | None:
    """--word as an index into ``words``, or the first occurrence of it (exact, then any case)."""
    if word.lstrip("-").isdigit():
        i = int(word)
        return i if -len(words) <= i < len(words) else None
    for match in (lambda w: w == word, lambda w: w.lower() == word.lower()):
        hits = [i for i, w in enumerate(words) if match(w)]
        if hits:
            return hits[0]
    return None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        wanted = [p.strip() for p in args.pictures.split(",") if p.strip()]
        if unknown := sorted(set(wanted) - set(PICTURES)):
            raise UsageError(f"--pictures: unknown {unknown}; choose from {','.join(PICTURES)}")
        sentences, gold = sentences_and_gold(args)
        model, tokenizer = load(args)
        return draw_all(args, model, tokenizer, sentences, gold, set(wanted))
    except UsageError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2


def draw_all(args, model, tokenizer, sentences, gold, wanted: set[str]) -> int:
    """Settle the sentences batch by batch, write their pictures, then the HTML page."""
    options = island_options(args, model.config.num_levels)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    written, results, skipped, no_word = [], [], 0, 0
    for start in range(0, len(sentences), args.batch_size):
        chunk = sentences[start : start + args.batch_size]
        all_states = word_states(model, tokenizer, chunk, num_iterations=args.iterations, batch_size=args.batch_size,
                                 device=args.device, all_iterations=True)  # (T+1, W, L, D) each
        for i, (words, states) in enumerate(zip(chunk, all_states), start):
            if not words:
                skipped += 1
                continue
            result = SentenceIslands.from_states(" ".join(words), words, states[-1], **options)
            results.append(result)
            figures = pictures(args, wanted, result, states, gold[i], options)
            no_word += "trajectory" in wanted and args.word is not None and "trajectory" not in figures
            written += [viz.save(fig, out / f"{i:03d}-{kind}.{args.image_format}") for kind, fig in figures.items()]
    if "html" in wanted:
        written.append(out / "islands.html")
        written[-1].write_text(viz.islands_html(results, "glomtext viz"), encoding="utf-8")
    for path in written:
        print(path)
    if skipped:
        print(f"{PROG}: skipped {skipped} empty sentence(s)", file=sys.stderr)
    if no_word:
        print(f"{PROG}: --word {args.word!r} not found in {no_word} sentence(s); no trajectory for them", file=sys.stderr)
    return 0


def pictures(args, wanted: set[str], result: SentenceIslands, states, gold: Tree | None, options: dict) -> dict:
    """The figures asked for, for one sentence; states: (T+1, W, L, D), every iteration."""
    words, figures = result.words, {}
    if "heatmap" in wanted:
        figures["heatmap"] = viz.similarity_heatmaps(words, states[-1])
    if "iterations" in wanted:
        figures["iterations"] = viz.islands_over_iterations(words, states, **options)
    if "tree" in wanted:
        figures["tree"] = viz.tree_figure(result.distance_tree() if args.tree == "distance" else result.island_tree(), gold)
    if "trajectory" in wanted and args.word is not None and (k := word_index(words, args.word)) is not None:
        figures["trajectory"] = viz.trajectory_figure(words, states, k)
    return figures
