"""``glomtext islands``: islands of agreement and part-whole trees for sentences.

    glomtext islands --model runs/tiny "He shut the noisy kids up."
    glomtext islands --model runs/tiny --input sents.txt --format json --output islands.jsonl

Formats: ``text`` (each level of each sentence with its islands marked, then both trees drawn),
``json`` (one JSON object per sentence per line, see ``SentenceIslands.to_dict``), ``ptb`` (one
tree per line, empty for an empty sentence) and ``html`` (a page of coloured spans). Results are
written as they come, so a huge input file runs in constant memory; a sentence longer than the
model takes is settled in windows of whole words (see ``glomtext.islands``). Input lines that are
not valid UTF-8 are kept (bad bytes become U+FFFD) and counted on stderr. Exit codes: 0 done,
2 bad arguments, input or model (one line on stderr, no traceback).
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from tqdm.auto import tqdm

from glomtext.islands import (
    DEFAULT_METHOD,
    DEFAULT_THRESHOLD,
    METHODS,
    Island,
    SentenceIslands,
    extract_islands,
    load_model,
    write_jsonl,
)
from glomtext.trees import to_ptb
from glomtext.viz import html_footer, html_header, html_sentence, printable

PROG = "glomtext islands"
FORMATS = ("text", "json", "ptb", "html")
# ANSI foreground colours for numbered islands (bold); singletons stay uncoloured
COLOURS = ("31", "32", "33", "34", "35", "36", "91", "92", "93", "94", "95", "96")


class UsageError(Exception):
    """A bad argument, input file or model: reported in one line, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Islands of agreement and part-whole trees for sentences.")
    add_model_arguments(p)
    p.add_argument("--output", "-o", metavar="FILE", help="write here instead of stdout")
    p.add_argument("--format", "-f", choices=FORMATS, default="text", help="output format (default: text)")
    p.add_argument("--tree", choices=("distance", "islands"), default="distance",
                   help="which tree --format ptb prints (default: the binary tree from adjacent distances)")
    p.add_argument("--pieces", action="store_true", help="islands of word pieces instead of words")
    p.add_argument("--no-color", action="store_true", help="plain marks even on a terminal (also: NO_COLOR=1)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    return p


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """Options shared with ``glomtext viz``: model, input sentences, settling and grouping."""
    p.add_argument("sentences", nargs="*", help="sentences to analyse (words are split on whitespace)")
    p.add_argument("--model", "-m", required=True, metavar="DIR", help="a saved glomtext model directory (with its tokenizer)")
    p.add_argument("--input", "-i", metavar="FILE", help="read sentences from FILE, one per line ('-' for stdin)")
    p.add_argument("--iterations", "-T", type=int, metavar="N", help="settling iterations (default: the model's)")
    p.add_argument("--batch-size", type=int, default=32, metavar="N", help="sentences per forward pass (default: 32)")
    p.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--method", choices=METHODS, default=DEFAULT_METHOD, help=f"linkage for grouping (default: {DEFAULT_METHOD})")
    p.add_argument("--threshold", type=thresholds, default=[DEFAULT_THRESHOLD], metavar="COS[,COS...]",
                   help=f"cosine threshold: one value, or one per level separated by commas (default: {DEFAULT_THRESHOLD})")
    p.add_argument("--nested", action="store_true", help="make each island a union of islands of the level below")
    add_link_rule_arguments(p)


def add_link_rule_arguments(p: argparse.ArgumentParser) -> None:
    """--link-mean / --link-choice: settle a model with neighbour links with another link rule than it was trained with."""
    from glomtext.configuration_glomtext import LINK_CHOICES, LINK_MEANS

    p.add_argument("--link-mean", choices=LINK_MEANS, help="settle with this link_mean instead of the model's (inference only)")
    p.add_argument("--link-choice", choices=LINK_CHOICES, help="settle with this link_choice instead of the model's (inference only)")


def thresholds(text: str) -> list[float]:
    """'0.9' -> [0.9]; '0.95,0.9,0.8' -> one threshold per level."""
    try:
        return [float(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or comma-separated numbers, got {text!r}") from None


def check_model_arguments(args: argparse.Namespace, need_sentences: bool = True) -> None:
    """Reject bad values before any work is done."""
    if need_sentences and not args.sentences and not args.input:
        raise UsageError("give sentences as arguments or --input FILE")
    if args.iterations is not None and args.iterations < 0:
        raise UsageError(f"--iterations must be >= 0, got {args.iterations}")
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.input and args.input != "-" and not Path(args.input).is_file():
        raise UsageError(f"input file {args.input!r} not found")
    if args.device:
        try:
            device = torch.device(args.device)
        except (RuntimeError, ValueError):
            raise UsageError(f"--device {args.device!r} is not a torch device") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise UsageError(f"--device {args.device}: CUDA is not available on this machine")


def island_options(args: argparse.Namespace, num_levels: int) -> dict:
    """find_islands options from the command line (the threshold checked against the model)."""
    if len(args.threshold) not in (1, num_levels):
        raise UsageError(f"--threshold takes 1 value or one per level ({num_levels}), got {len(args.threshold)}")
    threshold = args.threshold[0] if len(args.threshold) == 1 else args.threshold
    return {"method": args.method, "threshold": threshold, "nested": args.nested}


def load(args: argparse.Namespace):
    """(model, tokenizer), or a UsageError naming the directory."""
    from transformers.utils import logging

    logging.set_verbosity_error()  # no load report (an MLM checkpoint's head is unused here) ...
    logging.disable_progress_bar()  # ... and no bar for loading a few weights
    try:
        return load_model(args.model, link_mean=args.link_mean, link_choice=args.link_choice)
    except (FileNotFoundError, ValueError) as e:
        raise UsageError(str(e)) from None


class InputLines:
    """Sentences from the command line, then from --input, read lazily; counts undecodable lines."""

    def __init__(self, sentences: Sequence[str], path: str | None):
        self.sentences, self.path = list(sentences), path
        self.bad_lines: list[int] = []

    def count(self) -> int | None:
        """How many sentences there are, if cheap to know (not for stdin)."""
        if self.path is None:
            return len(self.sentences)
        if self.path == "-":
            return None
        with open(self.path, "rb") as f:
            return len(self.sentences) + sum(1 for _ in f)

    def __iter__(self) -> Iterator[str]:
        yield from self.sentences
        if self.path is None:
            return
        f = sys.stdin.buffer if self.path == "-" else open(self.path, "rb")
        try:
            for number, raw in enumerate(f, 1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError:
                    self.bad_lines.append(number)
                    line = raw.decode("utf-8", errors="replace")
                yield line.rstrip("\r\n")
        finally:
            if f is not sys.stdin.buffer:
                f.close()

    def report(self) -> None:
        if self.bad_lines:
            shown = ", ".join(map(str, self.bad_lines[:10])) + (", ..." if len(self.bad_lines) > 10 else "")
            print(f"{PROG}: {len(self.bad_lines)} input line(s) were not valid UTF-8 (lines {shown}); "
                  "bad bytes were replaced by U+FFFD", file=sys.stderr)


# ------------------------------------------------------------------------------------------------
# the text view


def numbered(islands: Sequence[Island]) -> dict[int, int]:
    """Number (1, 2, ...) the islands of more than one word, in order of their first word."""
    multi = [isl for isl in islands if len(isl.members) > 1]
    return {w: k for k, isl in enumerate(multi, 1) for w in isl.members}


def render_level(words: Sequence[str], islands: Sequence[Island], colour: bool) -> list[str]:
    """The sentence with this level's islands marked, then one legend line per numbered island.

    Plain: every contiguous fragment of an island in brackets followed by the island's number, so
    the fragments of a discontinuous island share a number. Colour: each island's words in its
    own colour, numbered only where the island is discontinuous.
    """
    number = numbered(islands)
    discontinuous = {number[isl.members[0]] for isl in islands if len(isl.members) > 1 and not isl.contiguous}
    parts, w = [], 0
    while w < len(words):
        k = number.get(w)
        end = w + 1
        while k is not None and end < len(words) and number.get(end) == k:
            end += 1
        text = " ".join(printable(x) for x in words[w:end])
        if k is None:
            parts.append(text)
        elif colour:
            mark = str(k) if k in discontinuous else ""
            parts.append(f"\033[1;{COLOURS[(k - 1) % len(COLOURS)]}m{text}{mark}\033[0m")
        else:
            parts.append(f"[{text}]{k}")
        w = end
    legend = []
    for isl in islands:
        if len(isl.members) > 1:
            k = number[isl.members[0]]
            shown = " ... ".join(" ".join(printable(words[i]) for i in run) for run in isl.fragments)
            kind = "" if isl.contiguous else ", discontinuous"
            line = f"{k}: {shown}  (score {isl.score:.3f}{kind})"
            legend.append(f"\033[{COLOURS[(k - 1) % len(COLOURS)]}m{line}\033[0m" if colour else line)
    return [" ".join(parts)] + legend


def render_text(result: SentenceIslands, colour: bool) -> str:
    """The full text view of one sentence."""
    from nltk.tree import TreePrettyPrinter

    lines = [printable(result.sentence)]
    if not result.words:
        return "\n".join(lines + ["  (no words)", ""])
    if result.windows > 1:
        lines.append(f"  (settled in {result.windows} windows: longer than the model's maximum)")
    for level, islands in reversed(list(enumerate(result.islands))):  # the top level first, like a tree
        first, *legend = render_level(result.words, islands, colour)
        lines.append(f"  level {level}  {first}")
        lines += [f"           {line}" for line in legend]
    words = [printable(w) for w in result.words]
    for name, tree in (("distance tree", result.distance_tree()), ("island tree", result.island_tree())):
        # nltk's pretty printer misplaces a leaf that follows a sibling subtree unless leaves are
        # word indices with the words passed separately
        tree = tree.copy(deep=True)
        for i, pos in enumerate(tree.treepositions("leaves")):
            tree[pos] = i
        lines.append(f"  {name}:")
        lines += ["    " + row for row in TreePrettyPrinter(tree, sentence=words).text().rstrip("\n").split("\n")]
    return "\n".join(lines + [""])


# ------------------------------------------------------------------------------------------------


def write_results(results, args: argparse.Namespace, out, colour: bool) -> int:
    """Write each result in the chosen format as it comes; returns the number of sentences."""
    n = 0
    if args.format == "html":
        out.write(html_header("glomtext islands"))
    for result in results:
        if args.format == "json":
            write_jsonl([result], out)
        elif args.format == "ptb":
            tree = result.distance_tree() if args.tree == "distance" else result.island_tree()
            out.write((to_ptb(tree) if result.words else "") + "\n")
        elif args.format == "html":
            out.write(html_sentence(result, n))
        else:
            out.write(render_text(result, colour) + "\n")
        out.flush()
        n += 1
    if args.format == "html":
        out.write(html_footer())
    return n


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        check_model_arguments(args)
        model, tokenizer = load(args)
        gc.freeze()  # the libraries' ~400k objects: Python's full collections need not re-scan them (see README, Speed)
        return run(args, model, tokenizer)
    except UsageError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def run(args: argparse.Namespace, model, tokenizer) -> int:
    options = island_options(args, model.config.num_levels)
    lines = InputLines(args.sentences, args.input)
    results = extract_islands(model, tokenizer, lines, num_iterations=args.iterations, batch_size=args.batch_size,
                              device=args.device, pieces=args.pieces, **options)
    show_bar = args.input is not None and not args.quiet
    try:
        out = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout
    except OSError as e:
        raise UsageError(f"cannot write {args.output!r}: {e.strerror}") from None
    colour = out.isatty() and not args.no_color and not os.environ.get("NO_COLOR") and args.format == "text"
    try:
        with tqdm(results, total=lines.count() if show_bar else None, disable=not show_bar, unit="sent") as bar:
            n = write_results(bar, args, out, colour)
    except BrokenPipeError:  # piped into `head`: stop quietly, and keep Python from failing on exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except ValueError as e:  # from extract_islands: a sentence too long to group (see glomtext.islands.MAX_WORDS)
        raise UsageError(str(e)) from None
    finally:
        if out is not sys.stdout:
            out.close()
    lines.report()
    if args.output:
        print(f"{PROG}: wrote {n} sentence(s) to {args.output}", file=sys.stderr)
    return 0
