"""``glomtext eval``: score islands and trees against a treebank and discontinuous units.

    glomtext eval --treebank nltk:treebank --output runs/eval                   # baselines only
    glomtext eval --treebank nltk:treebank --backbone all-MiniLM-L6-v2 --output runs/eval
    glomtext eval --treebank 'wsj/23/*.mrg' --model runs/pretrain/final \\
        --units ud_prt=en_ewt-ud-dev.conllu --units parseme=train.cupt --units ptb_traces --output runs/eval

Without --model only the baselines are scored (and the backbone ones when --backbone is given);
with --model the backbone defaults to the one named in the model's config (``--backbone none``
turns it off). ``--units ptb_traces`` without a path derives the units from --treebank.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from glomtext.commands.islands import add_link_rule_arguments, thresholds
from glomtext.evaluation.readers import ReadError, read_ptb
from glomtext.evaluation.units import KINDS
from glomtext.islands import DEFAULT_METHOD, DEFAULT_THRESHOLD, METHODS, READOUTS


def positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


# -- the arguments and loading shared by the study scripts in eval/ -----------------------------
DEV_HALF = "nltk:treebank/wsj_00??.mrg"  # issue 7's development half of the WSJ sample


def add_study_arguments(p: argparse.ArgumentParser, max_sentences: int = 500, untrained: bool = True) -> None:
    """--treebank (default: the development half), --max-sentences, --untrained and the link rule."""
    p.add_argument("--treebank", default=DEV_HALF, help=f"PTB files: a path, a glob or nltk:... (default: {DEV_HALF})")
    p.add_argument("--max-sentences", type=positive_int, default=max_sentences, help=f"the first N sentences (default: {max_sentences})")
    if untrained:
        p.add_argument("--untrained", action="store_true", help="score the untrained control (same config, fresh weights, seed 0) instead")
    add_link_rule_arguments(p)


def read_study_treebank(p: argparse.ArgumentParser, args: argparse.Namespace):
    """(trees, read log) of --treebank, or the parser's one-line error naming it."""
    try:
        return read_ptb(args.treebank, max_sentences=args.max_sentences)
    except (ReadError, ValueError, FileNotFoundError) as e:
        p.error(f"--treebank {args.treebank}: {e}")


def load_study_model(p: argparse.ArgumentParser, args: argparse.Namespace, model: str, **options):
    """A GlomText system for `model`, settled with --link-mean / --link-choice (the untrained control with --untrained),
    or the parser's one-line error naming the model."""
    from glomtext.evaluation.systems import GlomText

    try:
        glom = GlomText(model, link_mean=args.link_mean, link_choice=args.link_choice, **options)
        return glom.untrained(0) if getattr(args, "untrained", False) else glom
    except (ValueError, OSError) as e:
        p.error(f"--model {model}: {e}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="glomtext eval", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--treebank", help="PTB bracketed files: a path, a glob ('wsj/*.mrg'), or nltk:treebank for NLTK's WSJ sample")
    p.add_argument("--model", help="a glomtext model directory (save_pretrained); without it only baselines are scored")
    p.add_argument("--units", action="append", default=[], metavar="KIND=PATH",
                   help=f"discontinuous units to score, repeatable; KIND is one of {', '.join(KINDS)} (ptb_traces alone: from --treebank)")
    p.add_argument("--output", required=True, help="folder for results.json, report.md, trees.jsonl and the plots")
    p.add_argument("--max-sentences", type=positive_int, help="use only the first N sentences of the treebank and of each units file")
    p.add_argument("--backbone", help="pretrained encoder for the backbone baselines (path or name, e.g. all-MiniLM-L6-v2); "
                                      "default: the model config's backbone; 'none' to skip")
    p.add_argument("--iterations", type=positive_int, help="settling iterations of the glomtext model (default: its config)")
    p.add_argument("--tree-levels", type=int, nargs="+", metavar="L",
                   help="read the model's trees from these levels only (0 = lowest; default: the mean over all levels)")
    p.add_argument("--tree-readout", choices=READOUTS, default="cosine",
                   help="adjacent distances of the model's trees: 1 - cosine of the word states (default), island changes, "
                        "1 - the neighbour links of a model with a constituent consensus_prior (links), "
                        "Tree Transformer's top-down parse of those links (links_top_down), "
                        "or their constituent prior merged bottom-up by average linkage (links_average)")
    p.add_argument("--right-skew", type=float, metavar="BIAS",
                   help="also score the model's trees with the right-skew bias of Kim et al. (2020) added to the distances, "
                        "as separate rows (a branching-direction prior; the default rows stay unbiased)")
    add_link_rule_arguments(p)
    p.add_argument("--island-threshold", type=thresholds, metavar="COS[,COS...]",
                   help=f"cosine threshold of the model's islands: one value, or one per level separated by commas "
                        f"(default: {DEFAULT_THRESHOLD}, as glomtext islands)")
    p.add_argument("--island-method", choices=METHODS, help=f"linkage that groups the model's islands (default: {DEFAULT_METHOD})")
    p.add_argument("--island-nested", action="store_true", help="make each of the model's islands a union of islands of the level below")
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--seed", type=int, default=0, help="first seed of the random-tree baseline (5 seeds: SEED .. SEED+4)")
    p.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def parse_units(specs: list[str], treebank: str | None) -> list[tuple[str, str]]:
    """(KIND, PATH) pairs from KIND=PATH arguments; ValueError with the offending argument."""
    out = []
    for spec in specs:
        kind, sep, path = spec.partition("=")
        if kind not in KINDS:
            raise ValueError(f"--units {spec!r}: unknown KIND {kind!r} (choose from {', '.join(KINDS)})")
        if not sep:
            if kind != "ptb_traces" or not treebank:
                raise ValueError(f"--units {spec!r}: give KIND=PATH" + (" (or --treebank for ptb_traces)" if kind == "ptb_traces" else ""))
            path = treebank
        out.append((kind, path))
    return out


def island_options(args: argparse.Namespace) -> dict:
    """The --island-* options that were given, as ``find_islands`` options."""
    options = {"method": args.island_method, "nested": args.island_nested or None}
    if args.island_threshold:
        options["threshold"] = args.island_threshold[0] if len(args.island_threshold) == 1 else args.island_threshold
    return {k: v for k, v in options.items() if v is not None}


def load_systems(args: argparse.Namespace):
    """(glomtext model or None, backbone or None) as the arguments ask. A backbone named only in the
    model's config that cannot be loaded is skipped with a warning; one asked for is required."""
    from glomtext.evaluation.systems import Backbone, GlomText

    glom = GlomText(args.model, iterations=args.iterations, batch_size=args.batch_size, device=args.device,
                    tree_levels=args.tree_levels, right_skew=args.right_skew, tree_readout=args.tree_readout,
                    link_mean=args.link_mean, link_choice=args.link_choice, island_options=island_options(args)) if args.model else None
    name = args.backbone or (glom.backbone if glom else None)
    if not name or name.lower() == "none":
        return glom, None
    try:
        return glom, Backbone(name, batch_size=args.batch_size, device=args.device)
    except ValueError as e:
        if args.backbone:
            raise
        print(f"glomtext eval: warning: no backbone baselines, the model's backbone is not available ({e}); "
              "choose one with --backbone", file=sys.stderr)
        return glom, None


def run(args: argparse.Namespace, argv: list[str]) -> tuple[dict, list]:
    """Read, score, and return results (and every treebank sentence's predicted trees) for the parsed arguments."""
    import torch

    from glomtext.evaluation.constituency import prepare_golds
    from glomtext.evaluation.pipeline import evaluate_constituency, evaluate_units
    from glomtext.evaluation.units import read_units

    torch.manual_seed(args.seed)
    progress = not args.no_progress
    units = parse_units(args.units, args.treebank)
    glom, backbone = load_systems(args)
    results: dict = {"config": {"command": "glomtext eval " + shlex.join(argv), "treebank": args.treebank, "model": args.model,
                                "backbone": backbone.label if backbone else None, "iterations": args.iterations,
                                "tree_levels": args.tree_levels, "tree_readout": args.tree_readout, "right_skew": args.right_skew,
                                "link_mean": args.link_mean, "link_choice": args.link_choice,
                                "islands": glom.island_options if glom else None,
                                "max_sentences": args.max_sentences, "seed": args.seed}, "timing_s": {}, "units": {}}
    predicted = []
    if args.treebank:
        start = time.time()
        trees, log = read_ptb(args.treebank, args.max_sentences)
        golds = prepare_golds(trees, log)
        print(f"treebank {args.treebank}: {log.summary()}", file=sys.stderr)
        results["constituency"], predicted = evaluate_constituency(
            golds, glom=glom, backbone=backbone, seeds=[args.seed + k for k in range(5)], progress=progress)
        results["constituency"]["read"] = log.as_dict()
        results["timing_s"]["constituency"] = round(time.time() - start, 1)
    for kind, path in units:
        start = time.time()
        unit_set = read_units(kind, path, args.max_sentences)
        print(f"units {kind} ({path}): {unit_set.log.summary()}", file=sys.stderr)
        results["units"][kind] = evaluate_units(unit_set, systems=[s for s in (glom, backbone) if s is not None], progress=progress)
        results["timing_s"][f"units/{kind}"] = round(time.time() - start, 1)
    return results, predicted


def main(argv: list[str] | None = None) -> int:
    from glomtext.evaluation.report import console_summary, write_report

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.treebank and not args.units:
        parser.error("give --treebank and/or --units")
    for given, flag in ((args.tree_levels, "--tree-levels"), (args.right_skew is not None, "--right-skew"),
                        (args.tree_readout != "cosine", "--tree-readout"), (args.link_mean, "--link-mean"),
                        (args.link_choice, "--link-choice"), (args.island_threshold, "--island-threshold"),
                        (args.island_method, "--island-method"), (args.island_nested, "--island-nested")):
        if given and not args.model:
            parser.error(f"{flag} needs --model")
    if args.right_skew is not None and not args.right_skew > 0:
        parser.error(f"--right-skew must be positive, got {args.right_skew}")
    try:
        results, predicted = run(args, argv)
    except (ReadError, ValueError, FileNotFoundError) as e:
        print(f"glomtext eval: error: {e}", file=sys.stderr)
        return 1
    written = write_report(results, predicted, Path(args.output))
    print(console_summary(results))
    print("\nwrote " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
