"""Discontinuous units (and contiguous ones of the same kinds, as a control) and their scores.

Kinds, each read from its own format:

==============  ==========================  =============================================
KIND            file                        unit
==============  ==========================  =============================================
``ud_prt``      UD ``.conllu``              verb + particle of a ``compound:prt`` relation
``parseme``     PARSEME ``.cupt``           verbal multiword expression (label: category)
``streusle``    STREUSLE ``.conllulex``     strong multiword expression (label: LEXCAT)
``ptb_traces``  PTB treebank (path/glob)    constituent after re-attaching antecedents at
                                            their traces (:mod:`.traces`)
``export``      NEGRA ``.export`` / ``.dbr`` constituent of a discontinuous treebank
==============  ==========================  =============================================

A unit is a set of word indices; its *gap* is the words between its first and last member that
are not members ("back *them* up"). For constituent kinds the contiguous control is every
contiguous constituent of 2+ words that is not the whole sentence.

The scores are defined in ``SCORE_DEFINITIONS`` (quoted in every report).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from glomtext.evaluation.constituency import prf
from glomtext.evaluation.readers import ConllSentence, DiscTree, ReadError, ReadLog, read_conll, read_discbracket, read_export, read_ptb
from glomtext.evaluation.traces import TraceTree

KINDS = ("ud_prt", "parseme", "streusle", "ptb_traces", "export")

SCORE_DEFINITIONS = (
    "Scores per level, from a system's word vectors (W, L, D) and the islands found at each level. "
    "Recovery, exact: some island has exactly the unit's words. Recovery, contained: some island holds all "
    "of the unit's words, none of its gap words, and is not the whole sentence (for a contiguous unit: some "
    "proper sub-sentence island holds it). Ranking (AUC, %): how often a pair of members agrees more "
    "(cosine) than a member and a contrast word (the gap words; for a contiguous unit its two neighbours), "
    "ties counting half, averaged over units. Discontinuous bracket F1: islands against gold units as "
    "unlabeled word sets, counting only discontinuous ones on both sides, as multisets per sentence "
    "(disco-dop's --disconly). Units with the same words in one sentence (unary chains) are scored once "
    "for recovery and AUC."
)


@dataclass(frozen=True)
class Unit:
    label: str
    members: tuple[int, ...]  # sorted word indices

    @property
    def gaps(self) -> tuple[int, ...]:
        inside = set(self.members)
        return tuple(i for i in range(self.members[0], self.members[-1]) if i not in inside)

    @property
    def contiguous(self) -> bool:
        return self.members[-1] - self.members[0] + 1 == len(self.members)


@dataclass
class UnitSentence:
    source: str  # file:line
    words: list[str]
    units: list[Unit]


@dataclass
class UnitSet:
    """The sentences of one KIND with their units, and what reading them skipped or noted."""

    kind: str
    path: str
    sentences: list[UnitSentence]
    log: ReadLog
    notes: Counter = field(default_factory=Counter)  # e.g. trace moves made / not made

    def counts(self) -> dict:
        units = [u for s in self.sentences for u in s.units]
        return {
            "sentences": len(self.sentences),
            "discontinuous": sum(not u.contiguous for u in units),
            "contiguous": sum(u.contiguous for u in units),
            "by_label": dict(Counter(u.label for u in units if not u.contiguous).most_common()),
        }


def read_units(kind: str, path: str, max_sentences: int | None = None) -> UnitSet:
    """Read the units of one KIND (see the module docstring) from ``path``."""
    if kind not in KINDS:
        raise ValueError(f"unknown unit kind {kind!r}; choose from {', '.join(KINDS)}")
    log, notes = ReadLog(), Counter()
    if kind == "ptb_traces":
        trees, log = read_ptb(path, max_sentences, log)
        sentences = [_trace_sentence(t.source, TraceTree(t.tree), notes) for t in trees]
    elif kind == "export":
        reader = read_discbracket if Path(path).suffix in (".dbr", ".discbracket") else read_export
        trees, log = reader(path, max_sentences, log)
        sentences = [_constituent_sentence(t) for t in trees]
    else:
        n_columns, extract = {"ud_prt": (10, _ud_prt), "parseme": (11, _parseme), "streusle": (19, _streusle)}[kind]
        rows, log = read_conll(path, n_columns, max_sentences, log)
        sentences = [s for s in (extract(r, log) for r in rows) if s is not None]
        log.read = len(sentences)
        if not sentences:
            raise ReadError(f"{path}: no usable {kind} sentence ({log.summary()})")
    return UnitSet(kind, path, sentences, log, notes)


def _unit(label: str, members) -> Unit:
    return Unit(label, tuple(sorted(members)))


def _ud_prt(s: ConllSentence, log: ReadLog) -> UnitSentence | None:
    """compound:prt relations of a UD sentence: (head verb, particle)."""
    units = []
    for i, row in enumerate(s.rows):
        if row[7] == "compound:prt":
            if not row[6].isdigit() or not 1 <= int(row[6]) <= len(s.rows):
                log.skip(s.source, "compound:prt whose head is not a word of the sentence", f"word {i + 1} head {row[6]!r}")
                return None
            units.append(_unit("compound:prt", {int(row[6]) - 1, i}))
    return UnitSentence(s.source, s.words, units)


def _parseme(s: ConllSentence, log: ReadLog) -> UnitSentence | None:
    """VMWEs of a .cupt sentence: column 11 holds ``n:CAT`` on an expression's first word, ``n`` on
    the others, several separated by ``;``, ``*`` for none and ``_`` when not annotated."""
    members: dict[str, set[int]] = {}
    label: dict[str, str] = {}
    for i, row in enumerate(s.rows):
        code = row[10]
        if code == "_":
            log.skip(s.source, "PARSEME:MWE column not annotated ('_')")
            return None
        if code == "*":
            continue
        for part in code.split(";"):
            m = re.fullmatch(r"(\d+)(?::(.+))?", part)
            if not m or (m.group(2) is None and m.group(1) not in label):
                log.skip(s.source, "malformed PARSEME:MWE code", f"word {i + 1}: {code!r}")
                return None
            if m.group(2) is not None:
                label[m.group(1)] = m.group(2)
            members.setdefault(m.group(1), set()).add(i)
    return UnitSentence(s.source, s.words, [_unit(label[k], members[k]) for k in sorted(members, key=int)])


def _streusle(s: ConllSentence, log: ReadLog) -> UnitSentence | None:
    """Strong MWEs of a .conllulex sentence: column 11 (SMWE) is ``group:position``; the label is
    the LEXCAT (column 12) of the expression's first word."""
    members: dict[str, set[int]] = {}
    label: dict[str, str] = {}
    for i, row in enumerate(s.rows):
        if row[10] == "_":
            continue
        m = re.fullmatch(r"(\d+):(\d+)", row[10])
        if not m:
            log.skip(s.source, "malformed SMWE column", f"word {i + 1}: {row[10]!r}")
            return None
        members.setdefault(m.group(1), set()).add(i)
        if m.group(2) == "1":
            label[m.group(1)] = row[11]
    if set(label) != set(members):
        log.skip(s.source, "SMWE group without a first word (position 1)")
        return None
    return UnitSentence(s.source, s.words, [_unit(label[k], members[k]) for k in sorted(members, key=int)])


def _constituents_to_units(words: Sequence[str], nodes) -> list[Unit]:
    """Discontinuous constituents, and contiguous ones of 2+ words short of the whole sentence."""
    units = [_unit(label, span) for label, span in nodes if len(span) >= 2]
    return [u for u in units if not u.contiguous or len(u.members) < len(words)]


def _trace_sentence(source: str, tree: TraceTree, notes: Counter) -> UnitSentence:
    notes.update(tree.move_antecedents())
    return UnitSentence(source, tree.words, _constituents_to_units(tree.words, tree.constituents()))


def _constituent_sentence(tree: DiscTree) -> UnitSentence:
    return UnitSentence(tree.source, tree.words, _constituents_to_units(tree.words, tree.nodes))


# ------------------------------------------------------------------------------------ scores


def contrast_words(unit: Unit, n_words: int) -> tuple[int, ...]:
    """Words a unit's members should agree with less than with each other: its gap words, or for
    a contiguous unit its neighbours (the word before and the word after it, where they exist)."""
    if not unit.contiguous:
        return unit.gaps
    return tuple(i for i in (unit.members[0] - 1, unit.members[-1] + 1) if 0 <= i < n_words)


def pair_auc(positive: torch.Tensor, negative: torch.Tensor) -> float:
    """P(a positive score > a negative score), ties counted half (the Mann-Whitney AUC)."""
    diff = positive[:, None] - negative[None, :]
    return ((diff > 0).float().mean() + 0.5 * (diff == 0).float().mean()).item()


def disc_bracket_prf(pairs: Iterable[tuple[Counter, Counter]]) -> dict:
    """Precision/recall/F1 (percent) of bracket multisets matched sentence by sentence, plus counts.

    pairs: per sentence, (gold brackets, predicted brackets) as Counters (multisets).
    """
    matched = n_gold = n_pred = 0
    for gold, pred in pairs:
        matched += sum((gold & pred).values())
        n_gold += sum(gold.values())
        n_pred += sum(pred.values())
    return {**prf(matched, n_pred, n_gold), "matched": matched, "gold": n_gold, "predicted": n_pred}


class UnitScorer:
    """Accumulates one system's unit scores over the sentences of one KIND."""

    GROUPS = ("discontinuous", "contiguous")

    def __init__(self, n_levels: int):
        self.n_levels = n_levels
        # per group: per level, counts of exact / contained recoveries; per unit: AUC per level
        self.exact = {g: [0] * n_levels for g in self.GROUPS}
        self.contained = {g: [0] * n_levels for g in self.GROUPS}
        self.exact_any = dict.fromkeys(self.GROUPS, 0)
        self.contained_any = dict.fromkeys(self.GROUPS, 0)
        self.n_units = dict.fromkeys(self.GROUPS, 0)
        self.aucs: dict[str, list[list[float]]] = {g: [] for g in self.GROUPS}
        self.gold_disc: list[Counter] = []
        self.pred_disc: list[list[Counter]] = []  # per sentence, per level

    def add(self, sentence: UnitSentence, vectors: torch.Tensor, islands: Sequence[Sequence]) -> None:
        """vectors: (W, L, D) word vectors of the sentence; islands[l]: islands (``.members``) at level l."""
        W = len(sentence.words)
        if vectors.shape[:2] != (W, self.n_levels) or len(islands) != self.n_levels:
            raise ValueError(f"{sentence.source}: expected vectors (W={W}, L={self.n_levels}, D), got {tuple(vectors.shape)} and {len(islands)} island levels")
        x = F.normalize(vectors.float(), dim=-1)
        sim = torch.einsum("ild,jld->lij", x, x)  # (L, W, W) cosines
        sets = [[frozenset(i.members) for i in level] for level in islands]
        for unit in {u.members: u for u in sentence.units}.values():
            self._add_unit(unit, W, sim, sets)
        self.gold_disc.append(Counter(frozenset(u.members) for u in sentence.units if not u.contiguous))
        self.pred_disc.append([Counter(s for s in level if len(s) >= 2 and max(s) - min(s) + 1 != len(s)) for level in sets])

    def _add_unit(self, unit: Unit, n_words: int, sim: torch.Tensor, sets: list[list[frozenset]]) -> None:
        group = "contiguous" if unit.contiguous else "discontinuous"
        members, gaps = frozenset(unit.members), frozenset(unit.gaps)
        self.n_units[group] += 1
        exact = [members in level for level in sets]
        contained = [any(members <= s and not s & gaps and len(s) < n_words for s in level) for level in sets]
        for level in range(self.n_levels):
            self.exact[group][level] += exact[level]
            self.contained[group][level] += contained[level]
        self.exact_any[group] += any(exact)
        self.contained_any[group] += any(contained)
        contrast = contrast_words(unit, n_words)
        if contrast:
            m = torch.tensor(unit.members)
            iu = torch.triu_indices(len(m), len(m), 1)
            pos = sim[:, m[iu[0]], m[iu[1]]]  # (L, pairs of members)
            neg = sim[:, m][:, :, torch.tensor(contrast)].flatten(1)  # (L, members x contrast words)
            self.aucs[group].append([pair_auc(pos[l], neg[l]) for l in range(self.n_levels)])

    def result(self) -> dict:
        out = {}
        for g in self.GROUPS:
            n = self.n_units[g]
            pct = (lambda c: 100.0 * c / n) if n else (lambda c: 0.0)
            auc = torch.tensor(self.aucs[g]).mean(0).tolist() if self.aucs[g] else []
            out[g] = {
                "n_units": n,
                "exact_by_level": [pct(c) for c in self.exact[g]],
                "contained_by_level": [pct(c) for c in self.contained[g]],
                "exact_any_level": pct(self.exact_any[g]),
                "contained_any_level": pct(self.contained_any[g]),
                "n_auc": len(self.aucs[g]),
                "auc_by_level": [100.0 * a for a in auc],
                "auc_best_level": max(range(len(auc)), key=auc.__getitem__) if auc else None,
            }
        by_level = [disc_bracket_prf((g, p[l]) for g, p in zip(self.gold_disc, self.pred_disc)) for l in range(self.n_levels)]
        any_level = disc_bracket_prf((g, Counter(set().union(*p))) for g, p in zip(self.gold_disc, self.pred_disc))
        out["disc_bracket"] = {"by_level": by_level, "any_level": any_level}
        return out
