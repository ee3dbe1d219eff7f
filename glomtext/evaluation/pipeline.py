"""Running the evaluations: every system on the same sentences, scores assembled for the report.

``evaluate_constituency`` scores the baselines, the backbone's distance trees and the glomtext
model on a prepared treebank, and keeps every sentence's predicted trees; ``evaluate_units``
scores the word vectors and islands of the model and of the backbone on one KIND of units.
"""

from __future__ import annotations

import random
import statistics
from itertools import chain, islice
from collections.abc import Sequence
from dataclasses import dataclass, field

from nltk import Tree

from glomtext.evaluation.baselines import FIXED, distance_trees, random_tree
from glomtext.evaluation.constituency import EVALB_PROTOCOL, PROTOCOL, ConstituencyScorer, GoldSentence, island_stats
from glomtext.evaluation.systems import iter_states, islands_of
from glomtext.evaluation.units import UnitScorer, UnitSet
from glomtext.trees import to_ptb

ISLAND_BATCH = 64  # sentences per batched island search
CALIBRATION = 256  # sentences whose pair cosines calibrate a backbone's island thresholds


@dataclass
class SentenceTrees:
    """A treebank sentence: its gold tree and the trees the systems predicted for its (Kim-protocol) words."""

    source: str
    words: list[str]
    gold: Tree
    predicted: dict[str, Tree] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """One line of the report's ``trees.jsonl``: the trees as one-line PTB strings."""
        return {"source": self.source, "words": self.words, "gold": to_ptb(self.gold),
                "predicted": {name: to_ptb(tree) for name, tree in self.predicted.items()}}


def mean_results(results: Sequence[dict]) -> dict:
    """Element-wise mean of result dicts with the same structure (numbers equal everywhere stay as they are)."""
    out = {}
    for key, value in results[0].items():
        values = [r[key] for r in results]
        if isinstance(value, dict):
            out[key] = mean_results(values)
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and len(set(values)) > 1:
            out[key] = sum(values) / len(values)
        else:
            out[key] = value
    return out


def _trees_and_islands(system, sentences: list[tuple[str, ...]], to_tree, progress: bool, keep_islands=frozenset()):
    """``to_tree(words, states)`` for every sentence from a system's word vectors, and the islands
    of the sentences in ``keep_islands`` (found in batches)."""
    trees, islands, pending = {}, {}, []

    def flush():
        for (words, _), found in zip(pending, islands_of([s for _, s in pending], **system.island_options)):
            islands[words] = found
        pending.clear()

    for words, states in zip(sentences, iter_states(system, sentences, progress)):
        trees[words] = to_tree(list(words), states)
        if words in keep_islands:
            pending.append((words, states))
            if len(pending) == ISLAND_BATCH:
                flush()
    flush()
    return trees, islands


def _score(golds: Sequence[GoldSentence], tree_of) -> dict:
    """One system's constituency result; ``tree_of(words)`` gives its tree for a word list."""
    scorer = ConstituencyScorer()
    for gold in golds:
        scorer.add(gold, tree_of(gold.words), tree_of(gold.evalb_words))
    return scorer.result()


def _baselines(golds: Sequence[GoldSentence], seeds: Sequence[int]) -> dict:
    """Fixed-shape trees, and random trees averaged over seeds (with their spread)."""
    systems = {name: _score(golds, build) for name, build in FIXED.items()}
    runs = []
    for seed in seeds:
        rng = random.Random(seed)
        runs.append(_score(golds, lambda words: random_tree(words, rng)))
    systems["random"] = {**mean_results(runs), "seeds": list(seeds),
                         "sentence_f1_std": statistics.pstdev(r["sentence_f1"] for r in runs),
                         "corpus_f1_std": statistics.pstdev(r["corpus_f1"] for r in runs)}
    return systems


def _backbone(golds, sentences, backbone, progress) -> tuple[dict, dict, int]:
    """Distance trees of every backbone layer: the best layer's result with all layers' scores."""
    trees, _ = _trees_and_islands(backbone, sentences, distance_trees, progress)
    layers = [_score(golds, lambda words: trees[tuple(words)][layer]) for layer in range(backbone.n_levels)]
    best = max(range(len(layers)), key=lambda layer: layers[layer]["sentence_f1"])
    per_layer = [{"layer": layer, "sentence_f1": r["sentence_f1"], "corpus_f1": r["corpus_f1"],
                  "sentence_f1_le10": r["sentence_f1_le10"], "evalb_unlabeled_f1": r["evalb_unlabeled"]["f1"]}
                 for layer, r in enumerate(layers)]
    result = {**layers[best], "backbone": backbone.label, "layer": best, "truncated_sentences": backbone.truncated, "per_layer": per_layer}
    return result, trees, best


def _glom_systems(golds, sentences, glom, progress, keep_islands=frozenset()) -> tuple[dict, dict, dict]:
    """Every system ``glom.trees`` reads from the model's states (the plain distance tree, and the
    right-skewed one when asked for), scored; with the trees and the islands of ``keep_islands``."""
    trees, islands = _trees_and_islands(glom, sentences, glom.trees, progress, keep_islands)
    systems = {}
    for name in [glom.name] + [f"{glom.name}_right_skew"] * bool(glom.right_skew):
        systems[name] = {**_score(golds, lambda words: trees[tuple(words)][name]), "model": glom.label,
                         "tree_levels": glom.tree_levels or "all", "tree_readout": glom.tree_readout}
        if name.endswith("_right_skew"):
            systems[name]["right_skew"] = glom.right_skew
    return systems, trees, islands


def _glomtext(golds, sentences, glom, progress) -> tuple[dict, dict]:
    """The model's distance trees, and its islands per level against the gold constituents."""
    systems, trees, islands = _glom_systems(golds, sentences, glom, progress, keep_islands={tuple(g.words) for g in golds})
    systems["glomtext"]["islands_by_level"] = island_stats([islands[tuple(g.words)] for g in golds], golds)
    systems["glomtext"]["islands"] = glom.island_options
    return systems, trees


def _untrained(golds, sentences, glom, seed, progress) -> dict:
    """The same read-out on the same architecture with fresh weights (``GlomText.untrained``)."""
    systems, _, _ = _glom_systems(golds, sentences, glom.untrained(seed), progress)
    return {name: {**r, "seed": seed} for name, r in systems.items()}


def evaluate_constituency(golds: Sequence[GoldSentence], *, glom=None, backbone=None, seeds: Sequence[int] = (0, 1, 2, 3, 4),
                          progress: bool = True) -> tuple[dict, list[SentenceTrees]]:
    """Scores of every system on ``golds`` (results.json's "constituency") and, for every gold
    sentence, the trees of right-branching, the backbone's best layer and the glomtext model
    (with its right-skewed row when asked for), named as in the scores.

    Each system parses the Kim-protocol words and, separately, the EVALB-protocol words of every
    sentence (identical word lists are parsed once).
    """
    systems = _baselines(golds, seeds)
    sentences = list(dict.fromkeys(w for g in golds for w in (tuple(g.words), tuple(g.evalb_words))))
    kept = {"right_branching": FIXED["right_branching"]}  # systems whose trees are kept
    if backbone is not None:
        systems["backbone_distance"], trees, best = _backbone(golds, sentences, backbone, progress)
        kept["backbone_distance"] = lambda words: trees[tuple(words)][best]
    if glom is not None:
        glom_systems, glom_trees = _glomtext(golds, sentences, glom, progress)
        systems |= glom_systems | _untrained(golds, sentences, glom, seeds[0], progress)
        kept |= {name: lambda words, name=name: glom_trees[tuple(words)][name] for name in glom_systems}
    predicted = [SentenceTrees(g.source, list(g.words), g.tree, {name: tree_of(g.words) for name, tree_of in kept.items()})
                 for g in golds]
    result = {"protocol": PROTOCOL, "evalb_protocol": EVALB_PROTOCOL, "n_sentences": len(golds),
              "n_sentences_le10": sum(len(g.words) <= 10 for g in golds), "systems": systems}
    return result, predicted


def evaluate_units(units: UnitSet, *, systems: Sequence = (), progress: bool = True) -> dict:
    """Counts of one KIND's units and, for each system (glomtext, backbone), its unit scores.

    glomtext islands are found with the model's ``island_options`` (the library's defaults unless
    ``glomtext eval --island-*`` set them, as ``glomtext islands`` shows them); a backbone's cosines
    have no common scale, so its islands use one threshold per layer calibrated on the first
    CALIBRATION sentences (``calibrate_thresholds``: the 90th percentile of pair cosines).
    """
    from glomtext.islands import calibrate_thresholds

    out = {"path": units.path, "counts": units.counts(), "read": units.log.as_dict(), "notes": dict(units.notes), "systems": {}}
    sentences = [s.words for s in units.sentences]
    for system in systems:
        scorer = UnitScorer(system.n_levels)
        states = iter_states(system, sentences, progress, f"{units.kind}: {system.name}")
        first = list(islice(states, CALIBRATION))
        options = dict(system.island_options)
        if system.name != "glomtext" and any(len(s) >= 2 for s in first):
            options["threshold"] = calibrate_thresholds(first)
        pending = []

        def flush():
            for (sentence, vectors), found in zip(pending, islands_of([v for _, v in pending], **options)):
                scorer.add(sentence, vectors, found)
            pending.clear()

        for sentence, vectors in zip(units.sentences, chain(first, states)):
            pending.append((sentence, vectors))
            if len(pending) == ISLAND_BATCH:
                flush()
        flush()
        name = "glomtext" if system.name == "glomtext" else "backbone_cosine"
        out["systems"][name] = {**scorer.result(), "levels": "model levels" if name == "glomtext" else "embedding output + layers",
                                "islands": options}
    return out
