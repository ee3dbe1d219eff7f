"""Discontinuous constituents from PTB traces, a simple version of the Discontinuous PTB.

The Penn Treebank marks a moved or extraposed constituent with a coindexed trace at the position it
belongs to: ``(NP-SBJ (NP the claim) (SBAR (-NONE- *ICH*-1))) ... (SBAR-1 that ...)``. Like
Evang & Kallmeyer's (2011) Discontinuous PTB, we re-attach the antecedent (``SBAR-1``) at its
trace's position, which makes the constituent around the trace discontinuous
(``NP-SBJ`` = "the claim ... that ..."). The rules, kept deliberately simple:

* traces used: ``*T*`` (wh-movement, topicalisation), ``*ICH*`` (interpret constituent here),
  ``*RNR*`` (right node raising), ``*EXP*`` (extraposition); gapping (``=n``), ``*``, ``*U*``,
  ``*PPA*`` and ``*?*`` are ignored;
* the antecedent is the nonterminal whose label ends in ``-n`` (``NP-SBJ-1``, ``WHNP-1``);
* it moves to the lowest ancestor of the trace that dominates an overt word (the trace's own
  ``(NP (-NONE- *T*-1))`` shell is empty);
* when several traces share an index (``*RNR*`` in each conjunct) the one nearest to the antecedent
  is used, the smallest move;
* moves are applied in order of the traces in the sentence, each on the tree left by the previous;
* a move is not made (and counted in the notes) when the antecedent has no overt word (``(WHNP-1
  (-NONE- 0))``), when the index has no single antecedent, or when the trace lies inside its own
  antecedent.

Words are the overt tokens (punctuation kept, empty elements removed).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from nltk import Tree

from glomtext.evaluation.constituency import is_preterminal, strip_label

TRACE = re.compile(r"\*(T|ICH|RNR|EXP)\*-(\d+)")
COINDEX = re.compile(r"-(\d+)$")


@dataclass
class _Node:
    label: str
    parent: int  # -1 for the root
    children: list[int] = field(default_factory=list)
    preterminal: bool = False  # a POS tag (or -NONE-) over one word or empty element
    word: int | None = None  # overt word index, for preterminals of overt words
    position: int = 0  # number of overt words before this node


class TraceTree:
    """A PTB tree as a mutable node table in which antecedents can be moved to their traces."""

    def __init__(self, tree: Tree):
        self.nodes: list[_Node] = []
        self.words: list[str] = []
        self.traces: list[tuple[int, str]] = []  # (node id of the -NONE- preterminal, index)
        self._add(tree, -1)

    def _add(self, node: Tree, parent: int) -> None:
        k = len(self.nodes)
        self.nodes.append(_Node(node.label(), parent, position=len(self.words)))
        if parent >= 0:
            self.nodes[parent].children.append(k)
        if is_preterminal(node):
            self.nodes[k].preterminal = True
            if node.label() != "-NONE-":
                self.nodes[k].word = len(self.words)
                self.words.append(node[0])
            elif m := TRACE.fullmatch(node[0]):
                self.traces.append((k, m.group(2)))
            return
        for child in node:
            self._add(child, k)

    def yield_of(self, k: int) -> set[int]:
        node = self.nodes[k]
        if node.word is not None:
            return {node.word}
        return set().union(*(self.yield_of(c) for c in node.children)) if node.children else set()

    def ancestors(self, k: int) -> list[int]:
        out = []
        while (k := self.nodes[k].parent) >= 0:
            out.append(k)
        return out

    def _distance(self, trace: int, span: set[int]) -> int:
        """Words between a trace's position and the nearer edge of a word set."""
        position = self.nodes[trace].position
        return min(abs(position - min(span)), abs(position - max(span) - 1))

    def move_antecedents(self) -> Counter:
        """Re-attach each antecedent at its trace (rules in the module docstring); returns notes."""
        notes: Counter = Counter()
        antecedents: dict[str, list[int]] = {}
        for k, node in enumerate(self.nodes):
            m = COINDEX.search(node.label)
            if m and not node.preterminal:
                antecedents.setdefault(m.group(1), []).append(k)
        by_index: dict[str, list[int]] = {}
        for k, index in self.traces:
            by_index.setdefault(index, []).append(k)
        for index, traces in by_index.items():
            found = antecedents.get(index, [])
            if len(found) != 1:
                notes["trace without a single antecedent"] += 1
                continue
            a = found[0]
            span = self.yield_of(a)
            if not span:
                notes["antecedent without overt words"] += 1
                continue
            trace = min(traces, key=lambda t: self._distance(t, span))
            target = next((p for p in self.ancestors(trace) if self.yield_of(p)), None)
            if target is None or target == a or a in self.ancestors(target):
                notes["trace inside its antecedent"] += 1
                continue
            old = self.nodes[a].parent
            self.nodes[old].children.remove(a)
            self.nodes[target].children.append(a)
            self.nodes[a].parent = target
            notes["moved"] += 1
        return notes

    def constituents(self) -> list[tuple[str, frozenset[int]]]:
        """(label without function tags, word set) of every nonterminal with at least one word."""
        out = []
        for k, node in enumerate(self.nodes):
            if not node.preterminal:
                span = self.yield_of(k)
                if span:
                    out.append((strip_label(node.label), frozenset(span)))
        return out

