"""Small tree utilities shared by the island read-out and the evaluation suite.

Trees are ``nltk.Tree`` objects whose leaves are words; spans are half-open word-index pairs
``(start, end)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from nltk import Tree


def tree_from_distances(words: Sequence[str], distances: Sequence[float], label: str = "X") -> Tree:
    """Binary tree from distances between adjacent words, split greedily top-down.

    ``distances[i]`` is the distance between ``words[i]`` and ``words[i + 1]`` (so there are
    ``len(words) - 1`` of them). Each span is split at its largest distance. Ties are broken toward
    the middle of the span (the most balanced split), so no left- or right-branching preference is
    added; remaining ties (two splits equally far from the middle) go to the earlier one.
    """
    words = list(words)
    if len(distances) != max(len(words) - 1, 0):
        raise ValueError(f"need {max(len(words) - 1, 0)} adjacent distances for {len(words)} words, got {len(distances)}")
    if not words:
        return Tree(label, [])

    def build(i: int, j: int):  # words[i:j]
        if j - i == 1:
            return words[i]
        mid = (i + j - 1) / 2  # split k means words[i:k+1] | words[k+1:j]
        k = max(range(i, j - 1), key=lambda k: (distances[k], -abs(k + 0.5 - mid), -k))
        return Tree(label, [build(i, k + 1), build(k + 1, j)])

    t = build(0, len(words))
    return t if isinstance(t, Tree) else Tree(label, [t])


def merge_distances(similarity) -> list[float]:
    """Adjacent distances that encode an average-linkage clustering of adjacent segments.

    ``similarity`` is a (W, W) array (torch tensor or nested lists) of how much words i and j belong
    together. Starting from single words, the adjacent pair of segments whose words are most similar
    on average (the mean of ``similarity`` over the block between them) is merged, until one segment
    is left. The distance between words k and k + 1 is the step at which their boundary was merged
    (1 = first), so ``tree_from_distances`` rebuilds exactly the merge tree. Ties go to the pair
    that makes the smaller segment, then to the one nearer the middle of the sentence (no
    branching-direction preference), then to the earlier one.
    """
    sim = torch.as_tensor(similarity, dtype=torch.float64)
    if sim.ndim != 2 or sim.shape[0] != sim.shape[1]:
        raise ValueError(f"similarity must be a square (W, W) matrix, got shape {tuple(sim.shape)}")
    W = sim.shape[0]
    P = F.pad(sim.cumsum(0).cumsum(1), (1, 0, 1, 0)).tolist()  # (W+1, W+1) 2-D prefix sums

    def linkage(a: int, b: int, c: int) -> float:  # mean of sim[a:b, b:c]
        return (P[b][c] - P[a][c] - P[b][b] + P[a][b]) / ((b - a) * (c - b))

    starts, order = list(range(W + 1)), [0.0] * max(W - 1, 0)  # segment k is words[starts[k]:starts[k + 1]]
    for step in range(1, W):
        k = max(range(len(starts) - 2), key=lambda k: (linkage(*starts[k : k + 3]), starts[k] - starts[k + 2],
                                                         -abs(starts[k + 1] - W / 2), -k))
        order[starts[k + 1] - 1] = float(step)
        del starts[k + 1]
    return order


def right_skewed(distances: Sequence[float], bias: float) -> list[float]:
    """Adjacent distances with the right-skew bias of Kim et al. (2020, "Are pre-trained language
    models aware of phrases?"): ``d_i + bias * mean(d) * (1 - i / (m - 1))`` for the gaps
    ``i = 0 .. m - 2`` of ``m`` words. Gaps further left get more added, so top-down splitting leans
    toward right-branching trees (``bias`` -> infinity gives exactly them, unless all distances are
    zero). This is a branching-direction prior: trees built with it are reported as their own rows.
    """
    d = list(distances)
    if not d:
        return d
    mean = sum(d) / len(d)
    return [x + bias * mean * (1 - i / len(d)) for i, x in enumerate(d)]


def tree_spans(tree: Tree | str, include_leaves: bool = False) -> list[tuple[int, int]]:
    """All constituent spans ``(start, end)`` of a tree, in pre-order (duplicates kept)."""
    spans: list[tuple[int, int]] = []

    def walk(node, start: int) -> int:
        if not isinstance(node, Tree):
            if include_leaves:
                spans.append((start, start + 1))
            return start + 1
        idx = len(spans)
        spans.append((start, start))  # placeholder, fixed below
        end = start
        for child in node:
            end = walk(child, end)
        spans[idx] = (start, end)
        return end

    walk(tree, 0)
    return spans


def left_branching(words: Sequence[str], label: str = "X") -> Tree:
    """((((w0 w1) w2) w3) ...)."""
    return tree_from_distances(words, list(range(len(words) - 1)), label)


def right_branching(words: Sequence[str], label: str = "X") -> Tree:
    """(w0 (w1 (w2 ...)))."""
    return tree_from_distances(words, list(range(len(words) - 1, 0, -1)), label)


def balanced(words: Sequence[str], label: str = "X") -> Tree:
    """Split every span in its middle."""
    return tree_from_distances(words, [0.0] * max(len(words) - 1, 0), label)


def to_ptb(tree: Tree) -> str:
    """One-line PTB bracket string; round brackets inside words are escaped as -LRB- / -RRB-."""
    escaped = tree.copy(deep=True)
    for pos in escaped.treepositions("leaves"):
        escaped[pos] = escaped[pos].replace("(", "-LRB-").replace(")", "-RRB-")
    return escaped.pformat(margin=10**9)
