"""Islands of agreement and the part-whole hierarchy they form (GLOM.md sections 2, 6 and 8).

After the network settles, the columns (word pieces) that belong to one unit hold nearly the same
vector at the level that represents that unit. This module reads those islands out, per sentence
and per level, and turns them into trees.

Pipeline: ``word_states`` runs a model and pools piece columns to words (``glomtext.words``),
giving a ``(W, L, D)`` tensor of unit-norm level embeddings per sentence; ``find_islands`` groups
the words of each level; ``island_tree`` / ``distance_tree`` build trees; ``extract_islands``
does all of it for one sentence or a stream of millions (batched, constant memory, a generator).
The pure functions work on any ``(W, L, D)`` tensor, without a model.

How columns are grouped (the default, and why)
----------------------------------------------
An island at level l is a set of words whose level-l vectors agree (cosine similarity). We group
the words of each level by **agglomerative clustering with average linkage and an absolute cosine
threshold** (``method="average", threshold=0.9``): start from singletons, repeatedly merge the two
clusters whose mean cross-cluster cosine is highest, stop when it falls below the threshold.

- Average linkage gives the threshold one meaning: every island's **score** (mean pairwise cosine
  of its members, the number we report) is at least the threshold, since a merge only joins two
  clusters whose cross pairs average at least ``threshold`` and whose inner pairs already do.
- Single linkage (``"single"``: connected components of the graph "cosine >= threshold") chains:
  A~B and B~C put A and C together even when they disagree, the blurring that GLOM's
  similarity-gated consensus is built to avoid. Complete linkage (``"complete"``: every pair above
  the threshold) is offered too, but one noisy pair splits an otherwise clear island.
- The threshold is absolute, not rescaled per sentence: at the top level a whole sentence *should*
  be one island, and a per-sentence rescaling would split it anyway. Levels of a trained model can
  differ in spread, so a per-level threshold (a sequence of L numbers) is accepted, and
  ``calibrate_thresholds`` derives one per level from a sample of sentences.
- Islands are sets, so they may be discontinuous ("shut ... up"). ``nested=True`` makes each island
  at level l+1 a union of islands at level l (clustering at level l+1 starts from the islands of
  level l), which turns the islands of all levels into a forest; the default reports what each
  level holds on its own. (With nesting, an island inherited from below may score under the
  threshold at the level above: its words were kept together although they no longer agree.)
- Clustering is vectorised with torch over all sentences of a batch and all levels at once: each
  step merges all pairs of clusters that are each other's best match (see ``_agglomerate``), so
  a batch takes a few steps, not one per word; ties go to the lowest word indices.

Devices: ``extract_islands`` and ``word_states`` run on ``device`` (default: CUDA when available),
moving the model there and putting it in eval mode; ``word_states`` returns CPU tensors.

Trees
-----
``island_tree`` reads the n-ary tree from the nested islands (a discontinuous island becomes one
node per contiguous fragment, labelled ``L{level}*{k}`` so the fragments stay linked).
``distance_tree`` builds a binary tree from a distance between each pair of adjacent words
(``adjacent_distances``: by default the mean over levels of ``1 - cosine``, so neighbours that
agree from a low level up are close; or, with ``readout="islands"``, the number of levels at which
they are in different islands) split greedily top-down by ``glomtext.trees.tree_from_distances``.
No branching-direction bias is added anywhere.

Long sentences
--------------
A sentence with more pieces than the model takes (``config.max_position_embeddings``, special
tokens included) is split into consecutive windows of whole words, each settled on its own; the
word states of the windows are concatenated, so islands are still found over the whole sentence
but columns of different windows never interacted. ``SentenceIslands.windows`` says how many
windows a sentence needed. A single word longer than a window keeps only its first pieces (with a
warning).
"""

from __future__ import annotations

import itertools
import json
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from nltk import Tree

from glomtext.trees import merge_distances, right_skewed, to_ptb, tree_from_distances
from glomtext.words import pool_to_words

METHODS = ("average", "complete", "single")
DEFAULT_METHOD = "average"
DEFAULT_THRESHOLD = 0.9
# Grouping compares every pair of words: (L, W, W) tensors. A 2,000-word "sentence" (an unsplit
# paragraph) takes ~10 s and ~1 GB on CPU at L=3; longer ones are refused with a clear error.
MAX_WORDS = 2048
GPU_READOUT_BATCH_SIZE = 1024  # sentences per island grouping in extract_islands on a GPU (several forward batches)
_BATCH_CELLS = 1 << 21  # sentences x longest^2 per clustering batch (short ones are not padded to a long one)
READOUTS = ("cosine", "islands", "links", "links_top_down", "links_average")
LINK_THRESHOLD = 0.8  # links_top_down: a pair is split at a level where its link is below this (Tree Transformer's parse)


# --------------------------------------------------------------------------------------------
# Islands from level states (pure functions, no model)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Island:
    """A set of columns (words, or pieces) that agree at one level."""

    level: int  # 0-based
    members: tuple[int, ...]  # sorted word indices (or piece indices at piece level)
    score: float  # agreement: mean pairwise cosine of members (1.0 for singletons)

    @property
    def contiguous(self) -> bool:
        return self.members[-1] - self.members[0] + 1 == len(self.members)

    @property
    def fragments(self) -> list[tuple[int, ...]]:
        """Maximal runs of consecutive members: (1, 2, 5) -> [(1, 2), (5,)]."""
        runs: list[list[int]] = []
        for m in self.members:
            if runs and m == runs[-1][-1] + 1:
                runs[-1].append(m)
            else:
                runs.append([m])
        return [tuple(r) for r in runs]

    def to_dict(self, words: Sequence[str] | None = None) -> dict:
        d = {"level": self.level, "members": list(self.members), "score": round(self.score, 6), "contiguous": self.contiguous}
        if words is not None:
            d["words"] = [words[i] for i in self.members]
        return d


def find_islands(
    states: torch.Tensor,
    *,
    method: str = DEFAULT_METHOD,
    threshold: float | Sequence[float] = DEFAULT_THRESHOLD,
    nested: bool = False,
) -> list[list[Island]]:
    """Islands of one sentence, per level.

    states: (W, L, D) level embeddings of W words (normalised here, so any scale works).
    returns: L lists; list l partitions the W words (singletons included) into islands, ordered
    by their first member. See the module docstring for ``method``, ``threshold`` and ``nested``.
    """
    return find_islands_batch([states], method=method, threshold=threshold, nested=nested)[0]


def find_islands_batch(
    states: Sequence[torch.Tensor],
    *,
    method: str = DEFAULT_METHOD,
    threshold: float | Sequence[float] = DEFAULT_THRESHOLD,
    nested: bool = False,
) -> list[list[list[Island]]]:
    """``find_islands`` for several sentences at once (one padded batch of torch ops)."""
    if not states:
        return []
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    lengths = [s.shape[0] for s in states]
    if max(lengths) > MAX_WORDS:
        k = max(range(len(states)), key=lengths.__getitem__)
        raise ValueError(f"states[{k}] has {lengths[k]} words; islands compare every pair of words, so at most {MAX_WORDS} are allowed")
    out: list = [None] * len(states)
    for group in _length_groups(lengths):
        for k, islands in zip(group, _find_islands_padded([states[k] for k in group], method, threshold, nested)):
            out[k] = islands
    return out


def _length_groups(lengths: list[int]) -> list[list[int]]:
    """Sentence indices, shortest first, cut into groups whose size x longest^2 stays within
    _BATCH_CELLS: one long sentence must not pad a whole batch to its length (memory ~ B L W^2)."""
    groups: list[list[int]] = []
    for k in sorted(range(len(lengths)), key=lengths.__getitem__):
        if groups and (len(groups[-1]) + 1) * lengths[k] ** 2 <= _BATCH_CELLS:
            groups[-1].append(k)
        else:
            groups.append([k])
    return groups


def _find_islands_padded(states: Sequence[torch.Tensor], method: str, threshold, nested: bool) -> list[list[list[Island]]]:
    """``find_islands_batch`` for one group of sentences, padded to the longest."""
    x, valid = _pad(states)  # (B, W, L, D), (B, W)
    B, W, L, _ = x.shape
    thr = _level_thresholds(threshold, L).to(x.device)  # (L,)
    sim = torch.einsum("bild,bjld->blij", x, x)  # (B, L, W, W) cosines
    if nested:
        labels = torch.arange(W, device=x.device).expand(B, W)
        per_level = []
        for level in range(L):
            labels = _agglomerate(sim[:, level], valid, labels, thr[level].expand(B), method)
            per_level.append(labels)
        labels = torch.stack(per_level, 1)  # (B, L, W)
    else:
        flat_valid = valid[:, None].expand(B, L, W).reshape(B * L, W)
        init = torch.arange(W, device=x.device).expand(B * L, W)
        labels = _agglomerate(sim.reshape(B * L, W, W), flat_valid, init, thr.repeat(B), method).view(B, L, W)
    scores = _island_scores(sim, labels, valid)  # (B, L, W), indexed by island label
    return _to_islands(labels, scores, valid)


def _pad(states: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack (W_b, L, D) tensors into (B, W_max, L, D) unit rows (zeros for padding) + (B, W_max) mask."""
    shapes = {tuple(s.shape[1:]) for s in states}
    if any(s.dim() != 3 for s in states) or len(shapes) != 1:
        raise ValueError(f"states must be (W, L, D) tensors with the same L and D, got shapes {[tuple(s.shape) for s in states]}")
    L, D = shapes.pop()
    lengths = torch.tensor([s.shape[0] for s in states])  # (B,)
    total = int(lengths.sum())
    word = torch.arange(int(lengths.max()))  # (W_max,)
    index = torch.where(word < lengths[:, None], lengths.cumsum(0)[:, None] - lengths[:, None] + word, total)  # (B, W_max)
    index = index.to(states[0].device)  # row of ``flat`` for each slot, ``total`` for padding
    flat = torch.cat([*states, states[0].new_zeros(1, L, D)]).float()  # (total + 1, L, D), the last row for padding
    return F.normalize(flat[index], dim=-1), index < total


def _level_thresholds(threshold: float | Sequence[float], num_levels: int) -> torch.Tensor:
    """A cosine threshold per level, (L,)."""
    if isinstance(threshold, (int, float)):
        return torch.full((num_levels,), float(threshold))
    thr = torch.as_tensor(list(threshold), dtype=torch.float32)
    if thr.shape != (num_levels,):
        raise ValueError(f"threshold needs one value per level ({num_levels}), got {len(thr)}")
    return thr


def _agglomerate(sim: torch.Tensor, valid: torch.Tensor, labels: torch.Tensor, threshold: torch.Tensor, method: str) -> torch.Tensor:
    """Agglomerative clustering of P independent problems at once.

    sim:       (P, W, W) cosine similarity between words.
    valid:     (P, W) False for padding words (they never merge).
    labels:    (P, W) starting clusters: each word's cluster id is the smallest index in its cluster.
    threshold: (P,) merging stops when the best linkage falls below it.
    returns:   (P, W) final cluster ids (still the smallest member index).

    Each step merges every pair of clusters that are each other's most similar cluster (reciprocal
    nearest neighbours) with linkage >= threshold. Average, single and complete linkage are
    reducible (a merged cluster is never more similar to a third than the closer of its parts),
    so this gives the same clusters as merging one best pair at a time, usually in a handful of
    steps instead of W - 1. Ties go to the lowest cluster id, so the globally best pair is always
    reciprocal and every step makes progress. A merged cluster's linkage row and column are
    combined from its parts' (Lance-Williams); for average linkage ``link`` holds the *sum* of
    cross-cluster cosines, divided by the cluster sizes when clusters are compared.
    """
    P, W, _ = sim.shape
    ids = torch.arange(W, device=sim.device).expand(P, W)  # (P, C) cluster ids
    not_self = ~torch.eye(W, dtype=torch.bool, device=sim.device)
    link = _cluster_linkage(sim, labels, method)  # (P, C, C)
    size = torch.zeros(P, W, device=sim.device).scatter_add_(1, labels, valid.float())  # (P, C)
    for _ in range(W):
        active = size > 0
        score = link / (size[:, :, None] * size[:, None, :]).clamp(min=1) if method == "average" else link
        score = score.masked_fill(~(active[:, :, None] & active[:, None, :] & not_self), float("-inf"))
        best, nearest = score.max(-1)  # (P, C) each cluster's most similar other cluster
        merge = (nearest.gather(1, nearest) == ids) & (best >= threshold[:, None])  # reciprocal, close enough
        if not merge.any():
            break
        partner = torch.where(merge, nearest, ids)  # (P, C)
        link = _combine(link, link.gather(1, partner[:, :, None].expand(P, W, W)), merge[:, :, None], method)  # rows
        link = _combine(link, link.gather(2, partner[:, None, :].expand(P, W, W)), merge[:, None, :], method)  # columns
        size = (size + size.gather(1, partner) * merge) * (~merge | (ids < nearest))  # the larger id retires
        labels = torch.where(merge, torch.minimum(ids, nearest), ids).gather(1, labels)
    return labels


def _cluster_linkage(sim: torch.Tensor, labels: torch.Tensor, method: str) -> torch.Tensor:
    """(P, W, W) word cosines -> (P, C, C) linkage between the clusters given by ``labels``
    (for average linkage the sum of cross cosines; the caller divides by the sizes)."""
    P, W, _ = sim.shape
    if torch.equal(labels, torch.arange(W, device=sim.device).expand(P, W)):
        return sim.clone()  # every word its own cluster
    reduce = {"average": "sum", "single": "amax", "complete": "amin"}[method]
    rows = sim.new_zeros(P, W, W).scatter_reduce(1, labels[:, :, None].expand(P, W, W), sim, reduce, include_self=False)
    return sim.new_zeros(P, W, W).scatter_reduce(2, labels[:, None, :].expand(P, W, W), rows, reduce, include_self=False)


def _combine(link: torch.Tensor, other: torch.Tensor, where: torch.Tensor, method: str) -> torch.Tensor:
    """Linkage of merged clusters from the linkages of their parts (only where ``where``)."""
    if method == "average":
        return link + other * where
    return torch.where(where, torch.maximum(link, other) if method == "single" else torch.minimum(link, other), link)


def _island_scores(sim: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean pairwise cosine of each island's members (1.0 for singletons).

    sim (B, L, W, W), labels (B, L, W), valid (B, W) -> (B, L, C) indexed by island label.
    """
    W = labels.shape[-1]
    pair_ok = valid[:, None, :, None] & valid[:, None, None, :] & ~torch.eye(W, dtype=torch.bool, device=sim.device)
    same = (labels[..., :, None] == labels[..., None, :]) & pair_ok  # (B, L, W, W)
    per_word = (sim * same).sum(-1)  # (B, L, W): sum of cosines to the word's island mates
    total = torch.zeros_like(per_word).scatter_add_(-1, labels, per_word)
    size = torch.zeros_like(per_word).scatter_add_(-1, labels, valid[:, None].expand_as(per_word).float())
    return torch.where(size > 1, total / (size * (size - 1)).clamp(min=1), torch.ones_like(total))


def _to_islands(labels: torch.Tensor, scores: torch.Tensor, valid: torch.Tensor) -> list[list[list[Island]]]:
    """Island labels and scores (B, L, W), valid words (B, W) -> per sentence, per level, Islands.

    Words are grouped by island with tensor ops (a stable sort by label) and moved off the device
    in one transfer; Python only cuts the sorted word list into tuples. Single-word islands, most
    of the islands at low levels, are shared immutable objects from a table.
    """
    B, L, W = labels.shape
    srt, order = labels.masked_fill(~valid[:, None], W).sort(dim=-1, stable=True)  # (B, L, W) grouped by island
    start = srt < W  # padding (label W) sorts last and starts nothing
    start[..., 1:] &= srt[..., 1:] != srt[..., :-1]
    row, pos = start.flatten(0, 1).nonzero(as_tuple=True)  # (K,) first word of each island; row = b * L + level
    if row.numel() == 0:
        return [[[] for _ in range(L)] for _ in range(B)]
    length = valid.sum(-1).repeat_interleave(L)  # (B*L,) words in each row
    next_in_row = torch.cat([row[1:] == row[:-1], row.new_zeros(1, dtype=torch.bool)])
    end = torch.where(next_in_row, pos.roll(-1), length[row])  # (K,) one past the island's last word
    first = order.flatten(0, 1)[row, pos]  # (K,) the island's first word
    single = torch.where(end - pos == 1, (row % L) * MAX_WORDS + first, -1)  # (K,) singletons: index into the table
    multi = (single < 0).nonzero().squeeze(1)  # (M,) islands of several words
    per_row = torch.bincount(row, minlength=B * L).cumsum(0)  # (B*L,) islands up to each row's end
    score = scores.flatten(0, 1)[row[multi], srt.flatten(0, 1)[row[multi], pos[multi]]]  # (M,) indexed by label
    K, M, n = row.numel(), multi.numel(), B * L * W
    ints = torch.cat([order.flatten(), single, per_row, multi, row[multi] % L, row[multi] * W + pos[multi],
                      row[multi] * W + end[multi]]).tolist()  # one transfer
    cuts = list(itertools.accumulate([0, n, K, B * L, M, M, M, M]))
    order_l, keys, bounds, where, levels, starts, ends = (ints[a:b] for a, b in zip(cuts, cuts[1:]))
    flat = list(map(_singletons(L).__getitem__, keys))  # every island a singleton (key -1: a placeholder) ...
    for k, lv, a, b, sc in zip(where, levels, starts, ends, score.tolist()):  # ... then the few larger ones
        flat[k] = Island(lv, tuple(order_l[a:b]), sc)
    rows = [flat[a:b] for a, b in zip([0] + bounds[:-1], bounds)]
    return [rows[b * L : (b + 1) * L] for b in range(B)]


_SINGLETONS: dict[int, list[Island]] = {}


def _singletons(num_levels: int) -> list[Island]:
    """Island(level, (w,), 1.0) at index level * MAX_WORDS + w, for every level < num_levels and word
    w < MAX_WORDS; built once per number of levels and shared (Islands are immutable)."""
    if num_levels not in _SINGLETONS:
        _SINGLETONS[num_levels] = [Island(level, (w,), 1.0) for level in range(num_levels) for w in range(MAX_WORDS)]
    return _SINGLETONS[num_levels]


def calibrate_thresholds(states: Iterable[torch.Tensor], quantile: float = 0.9) -> list[float]:
    """One cosine threshold per level: the ``quantile`` of all word-pair cosines at that level.

    states: (W, L, D) tensors of a sample of sentences. With quantile q, roughly the most similar
    (1 - q) of word pairs at each level count as agreeing; use it when the levels of a model differ
    in how spread out their similarities are.
    """
    per_level: list[list[torch.Tensor]] = []
    for s in states:
        x = F.normalize(s.float(), dim=-1).transpose(0, 1)  # (L, W, D)
        W = x.shape[1]
        if W < 2:
            continue
        iu = torch.triu_indices(W, W, 1)
        pairs = (x @ x.transpose(1, 2))[:, iu[0], iu[1]]  # (L, W*(W-1)/2)
        per_level = per_level or [[] for _ in range(x.shape[0])]
        for level, p in enumerate(pairs):
            per_level[level].append(p.cpu().numpy())
    if not per_level:
        raise ValueError("calibrate_thresholds needs at least one sentence with two or more words")
    return [float(np.quantile(np.concatenate(p), quantile)) for p in per_level]


# --------------------------------------------------------------------------------------------
# Trees
# --------------------------------------------------------------------------------------------


def adjacent_distances(states: torch.Tensor, *, readout: str = "cosine", levels: Sequence[int] | None = None,
                       links: torch.Tensor | None = None, **island_options) -> torch.Tensor:
    """Distance between each pair of adjacent words, read from the level states.

    states: (W, L, D). returns: (W - 1,).
    readout="cosine" (default): mean over levels of 1 - cos(word_i, word_i+1). Neighbours that
        agree from a low level upward are close; neighbours that only meet at the top are far.
    readout="islands": the number of levels at which the two words are in different islands
        (``find_islands(states, **island_options)``); with nested islands this is the lowest
        level at which they first share an island.
    readout="links": mean over levels of 1 - ``links`` (L, W-1), the neighbour links of a model trained
        with a constituent ``consensus_prior`` (``word_links`` computes them).
    readout="links_top_down": Tree Transformer's own parse of the same links: a span is split at its weakest
        link at the highest level where some link of the span is below LINK_THRESHOLD, else at level 0. As
        distances: the number of levels at which the pair's link is below the threshold, plus 1 - its link
        at the highest of them (at level 0 if none), so the greedy split reproduces that parse.
    readout="links_average": the same links as the constituent prior they make (C_ij = the product of the links
        between words i and j, averaged over the levels), merged bottom-up: adjacent segments whose words have the
        highest mean C between them first (``glomtext.trees.merge_distances``; as distances: the merge steps).
    levels: only use these levels (default: all).
    """
    if readout not in READOUTS:
        raise ValueError(f"readout must be one of {READOUTS}, got {readout!r}")
    if readout != "islands" and island_options:
        raise TypeError(f"island options {sorted(island_options)} only apply to readout='islands'")
    if (links is None) == readout.startswith("links"):
        raise TypeError(f"readout={readout!r}: the links read-outs need the words' neighbour links (links=word_links(...)), "
                        "and only they take them")
    level_idx = list(range(states.shape[1])) if levels is None else list(levels)
    if states.shape[0] < 2:
        return states.new_zeros(0, dtype=torch.float32)
    if readout == "cosine":
        x = F.normalize(states[:, level_idx].float(), dim=-1)  # (W, L', D)
        return (1 - (x[:-1] * x[1:]).sum(-1)).mean(-1)  # (W-1,)
    if readout.startswith("links"):
        if links.shape != (states.shape[1], states.shape[0] - 1):
            raise ValueError(f"links must have shape (levels, words - 1) = {(states.shape[1], states.shape[0] - 1)}, got {tuple(links.shape)}")
        chosen = links[level_idx].float()  # (L', W-1), non-decreasing along the levels
        if readout == "links":
            return 1 - chosen.mean(0)  # (W-1,)
        if readout == "links_average":
            from glomtext.modeling_glomtext import constituent_prior

            W = states.shape[0]
            prior = constituent_prior(chosen[:, None].double(), torch.arange(W).expand(1, 1, W, W))  # (L', 1, W, W)
            return torch.tensor(merge_distances(prior.mean((0, 1))))  # (W-1,)
        split = (chosen < LINK_THRESHOLD).sum(0)  # (W-1,) the levels at which the pair is split: the lowest ones
        return split + 1 - chosen.gather(0, (split - 1).clamp(min=0)[None])[0]  # (W-1,)
    islands = find_islands(states, **island_options)
    label = torch.tensor([_word_labels(islands[l], states.shape[0]) for l in level_idx])  # (L', W)
    return (label[:, :-1] != label[:, 1:]).float().sum(0)


@torch.no_grad()
def word_links(model, states: torch.Tensor, tokenizer=None, words: Sequence[str] | None = None) -> torch.Tensor:
    """The constituent prior's neighbour links between adjacent words, (L, W-1), of a model (GlomTextModel or
    GlomTextForMaskedLM) with a constituent ``consensus_prior``.

    "constituent" and "constituent_learned" links are computed from the (W, L, D) word states.
    "constituent_front_end" and "dependency" links depend only on the word pieces, so they need the ``tokenizer`` and the
    ``words`` (as the model read them): the link of two words is the model's link between the last piece of
    the first and the first piece of the second (the product of the links in between, if any).
    """
    model = getattr(model, "base_model", model)
    settling, prior = model.settling, model.config.consensus_prior
    if prior == "none":
        raise ValueError("the links read-out needs a model trained with a constituent consensus_prior; this one has none")
    if states.shape[0] < 2:  # no pair of words
        return torch.zeros(model.config.num_levels, 0)
    p = next(settling.parameters())
    if prior in ("constituent", "constituent_learned"):
        z = states.permute(1, 0, 2)[:, None].to(p.device, p.dtype)  # (W, L, D) -> (L, 1, W, D)
        return settling.links(z, torch.ones(1, states.shape[0], dtype=torch.bool, device=p.device))[:, 0].cpu()  # (L, W-1)
    if tokenizer is None or words is None:
        raise TypeError(f"the links of a {prior!r} model are read from its word pieces: pass tokenizer= and words=")
    if len(words) != states.shape[0]:
        raise ValueError(f"{len(words)} words but states for {states.shape[0]}")
    enc = tokenizer(list(words), is_split_into_words=True, return_tensors="pt", verbose=False)
    ids = enc["input_ids"]  # (1, N)
    if ids.shape[1] > model.config.max_position_embeddings:
        raise ValueError(f"{len(words)} words make {ids.shape[1]} pieces; the model takes at most {model.config.max_position_embeddings}")
    ok = torch.ones_like(ids, dtype=torch.bool)
    front_end = model.front_end(ids.to(p.device), ok.long().to(p.device))  # (1, N, D)
    piece = settling.front_end_links(front_end, ok.to(p.device))[:, 0].float().cpu()  # (L, N-1)
    word_ids = enc.word_ids(0)
    first = {w: i for i, w in reversed(list(enumerate(word_ids))) if w is not None}
    last = {w: i for i, w in enumerate(word_ids) if w is not None}
    if len(first) != len(words):
        raise ValueError(f"the tokenizer gives no piece for word(s) {sorted(set(range(len(words))) - set(first))} of {list(words)}")
    cuts = [(last[w], first[w + 1]) for w in range(len(words) - 1)]
    return torch.stack([piece[:, a:b].prod(-1) for a, b in cuts], dim=-1) if cuts else piece[:, :0]  # (L, W-1)


def distance_tree(words: Sequence[str], states: torch.Tensor, *, right_skew: float = 0.0, **readout_options) -> Tree:
    """Binary tree over ``words`` from ``adjacent_distances(states, **readout_options)``; with
    ``right_skew`` > 0 the distances first get that right-skew bias (``glomtext.trees.right_skewed``,
    a branching-direction prior, off by default)."""
    if len(words) != states.shape[0]:
        raise ValueError(f"{len(words)} words but states for {states.shape[0]}")
    distances = adjacent_distances(states, **readout_options).tolist()
    return tree_from_distances(words, right_skewed(distances, right_skew) if right_skew else distances)


def island_tree(words: Sequence[str], islands: Sequence[Sequence[Island]]) -> Tree:
    """The n-ary tree read from the islands of all levels (nested ones: ``find_islands(nested=True)``).

    A node is a contiguous run of words in one island, labelled ``L{m}`` with m the lowest level
    at which that island exists; a node that persists over several levels appears once. A
    discontinuous island becomes one node per fragment, labelled ``L{m}*{k}`` (k: its index in
    ``islands[m]``), kept even for one-word fragments so the link stays visible. Islands that are
    not nested are first refined (each intersected with the islands above it), so the result is
    still a tree; k then numbers the refined islands of level m by their first word.
    Single-word islands are plain leaves; if the top level holds several islands, the root is
    ``X``.
    """
    W, L = len(words), len(islands)
    if W == 0 or L == 0:
        return Tree("X", list(words))
    label = [_word_labels(level, W) for level in islands]  # (L, W) island index per word
    key = [None] * L  # key[l][w]: id of w's refined island at level l (its islands at levels >= l)
    for level in reversed(range(L)):
        key[level] = [(label[level][w], key[level + 1][w] if level + 1 < L else None) for w in range(W)]
    members = [{} for _ in range(L)]  # members[l][key] = sorted word indices, islands by first word
    for level in range(L):
        for w in range(W):
            members[level].setdefault(key[level][w], []).append(w)
    index = [{k: i for i, k in enumerate(level)} for level in members]  # refined island -> its number

    def runs(lo: int, hi: int, level: int) -> list[tuple[int, int]]:
        """Maximal runs of words[lo:hi] in the same refined island at ``level``."""
        starts = [lo] + [w for w in range(lo + 1, hi) if key[level][w] != key[level][w - 1]]
        return list(zip(starts, starts[1:] + [hi]))

    def child(lo: int, hi: int, level: int):
        if hi - lo == 1 and members[level][key[level][lo]] == [lo]:
            return words[lo]
        return node(lo, hi, level)

    def node(lo: int, hi: int, level: int) -> Tree:
        island = members[level][key[level][lo]]
        m = level
        while m > 0 and members[m - 1][key[m - 1][lo]] == island:
            m -= 1  # the same island already exists one level down
        name = f"L{m}" if island == list(range(lo, hi)) else f"L{m}*{index[m][key[m][lo]]}"
        if m == 0:
            return Tree(name, list(words[lo:hi]))
        return Tree(name, [child(a, b, m - 1) for a, b in runs(lo, hi, m - 1)])

    top = runs(0, W, L - 1)
    if len(top) == 1:
        return node(0, W, L - 1)
    return Tree("X", [child(a, b, L - 1) for a, b in top])


def _word_labels(level_islands: Sequence[Island], num_words: int) -> list[int]:
    """Index of each word's island in ``level_islands``; every word must be in exactly one."""
    label = [-1] * num_words
    for k, island in enumerate(level_islands):
        for w in island.members:
            if not 0 <= w < num_words or label[w] != -1:
                raise ValueError(f"level {island.level}: word {w} is out of range or in two islands")
            label[w] = k
    if -1 in label:
        raise ValueError(f"islands do not cover word {label.index(-1)} (a level must partition the words)")
    return label


# --------------------------------------------------------------------------------------------
# Ambiguity: how a word's vector moves with context
# --------------------------------------------------------------------------------------------


def word_trajectory(all_states: torch.Tensor, word: int) -> tuple[torch.Tensor, torch.Tensor]:
    """How word ``word`` moves over the settling iterations (GLOM.md section 6).

    all_states: (T+1, W, L, D), the initial state then the state after each iteration.
    returns: to_initial (T+1, L): cosine of the word's level-l vector at each iteration to its
             initial vector (1.0 at iteration 0; drops as context pulls the word away), and
             to_words (T+1, L, W): cosine to every word of the sentence at the same iteration
             (which words it is joining at each level).
    """
    if not 0 <= word < all_states.shape[1]:
        raise ValueError(f"word index {word} out of range for {all_states.shape[1]} words")
    x = F.normalize(all_states.float(), dim=-1)  # (T+1, W, L, D)
    me = x[:, word]  # (T+1, L, D)
    to_initial = (me * me[:1]).sum(-1)  # (T+1, L)
    to_words = torch.einsum("tld,twld->tlw", me, x)  # (T+1, L, W)
    return to_initial, to_words


# --------------------------------------------------------------------------------------------
# Running a model
# --------------------------------------------------------------------------------------------


@dataclass
class SentenceIslands:
    """Everything extracted for one sentence; ``words`` are word pieces at piece level."""

    sentence: str
    words: list[str]
    islands: list[list[Island]]  # per level
    distances: list[float]  # between adjacent words, the default tree read-out
    windows: int = 1  # how many windows the sentence was split into (see the module docstring)
    states: torch.Tensor | None = field(default=None, repr=False)  # (W, L, D) on CPU if kept

    @classmethod
    def from_states(cls, sentence: str, words: list[str], states: torch.Tensor, **island_options) -> SentenceIslands:
        """Build from one sentence's (W, L, D) states (``find_islands(states, **island_options)``)."""
        return cls(sentence, words, find_islands(states, **island_options), adjacent_distances(states).tolist())

    def distance_tree(self) -> Tree:
        return tree_from_distances(self.words, self.distances)

    def island_tree(self) -> Tree:
        return island_tree(self.words, self.islands)

    def to_dict(self) -> dict:
        """JSON-ready: sentence, words, levels, islands per level, trees as PTB strings."""
        empty = not self.words
        return {
            "sentence": self.sentence,
            "words": self.words,
            "levels": len(self.islands),
            "islands": [[isl.to_dict(self.words) for isl in level] for level in self.islands],
            "distances": [round(d, 6) for d in self.distances],
            "trees": {
                "distance": None if empty else to_ptb(self.distance_tree()),
                "islands": None if empty else to_ptb(self.island_tree()),
            },
            "windows": self.windows,
        }


def extract_islands(
    model,
    tokenizer,
    sentences: str | Iterable[str | Sequence[str]],
    *,
    num_iterations: int | None = None,
    batch_size: int = 32,
    device: str | torch.device | None = None,
    pieces: bool = False,
    method: str = DEFAULT_METHOD,
    threshold: float | Sequence[float] = DEFAULT_THRESHOLD,
    nested: bool = False,
    keep_states: bool = False,
    readout_batch_size: int | None = None,
    progress: bool = False,
) -> Iterator[SentenceIslands]:
    """Islands and tree read-outs for each sentence, yielded in input order (a generator).

    sentences: one string, or an iterable (a list, or a file object read lazily) of strings
    (split on whitespace) or of word lists. Memory stays constant in the number of sentences.
    pieces=True keeps word pieces as the units instead of pooling them to words.
    keep_states=True also returns each sentence's (W, L, D) states (on CPU).
    readout_batch_size: islands are grouped for at least this many sentences at once. Default:
    ``batch_size`` on CPU, where small groups stay in cache; at least ``GPU_READOUT_BATCH_SIZE``
    (several forward batches) on a GPU, where a clustering call launches the same few hundred small
    kernels whatever its size (``benchmarks/bench_islands.py`` measures both).
    A sentence of more than ``MAX_WORDS`` units raises ValueError naming its position, once the
    sentences before it have been yielded.
    """
    if readout_batch_size is None:
        on_gpu = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu")).type == "cuda"
        readout_batch_size = max(batch_size, GPU_READOUT_BATCH_SIZE) if on_gpu else batch_size
    if readout_batch_size < 1:
        raise ValueError(f"readout_batch_size must be >= 1, got {readout_batch_size}")
    done = 0  # sentences yielded so far
    settled = _settle(model, tokenizer, sentences, num_iterations=num_iterations, batch_size=batch_size,
                      device=device, all_iterations=False, pieces=pieces, progress=progress)
    for batch in _regroup(settled, readout_batch_size):
        too_long = [k for k, item in enumerate(batch) if len(item.units) > MAX_WORDS]
        ok = batch[: too_long[0]] if too_long else batch  # yield the sentences before a too long one, then fail
        states = [b.states for b in ok]
        found = find_islands_batch(states, method=method, threshold=threshold, nested=nested)
        for item, islands, distances in zip(ok, found, _adjacent_distances_batch(states)):
            yield SentenceIslands(item.text, item.units, islands, distances, item.windows, item.states.cpu() if keep_states else None)
        if too_long:
            n = len(batch[too_long[0]].units)
            raise ValueError(f"sentence {done + too_long[0] + 1} has {n} {'pieces' if pieces else 'words'}; islands compare "
                             f"every pair, so a sentence may have at most {MAX_WORDS}: split it")
        done += len(batch)


def _regroup(batches: Iterable[list], size: int) -> Iterator[list]:
    """Concatenate consecutive batches until each group holds at least ``size`` items (the last may hold fewer)."""
    group: list = []
    for batch in batches:
        group += batch
        if len(group) >= size:
            yield group
            group = []
    if group:
        yield group


def _adjacent_distances_batch(states: list[torch.Tensor]) -> list[list[float]]:
    """``adjacent_distances`` (cosine read-out) of many (W, L, D) unit-row tensors, in one device op."""
    if not states:
        return []
    flat = torch.cat(states)  # (total, L, D)
    d = (1 - (flat[:-1] * flat[1:]).sum(-1)).mean(-1).tolist()  # (total - 1,), includes pairs across sentences
    out, start = [], 0
    for s in states:
        n = s.shape[0]
        out.append(d[start : start + n - 1] if n > 1 else [])
        start += n
    return out


def word_states(
    model,
    tokenizer,
    sentences: Sequence[str | Sequence[str]],
    *,
    num_iterations: int | None = None,
    batch_size: int = 32,
    device: str | torch.device | None = None,
    all_iterations: bool = False,
    progress: bool = False,
) -> list[torch.Tensor]:
    """Word-level states of each sentence, on CPU, unit-norm rows.

    sentences: strings (split on whitespace) or pre-split word lists.
    returns: one (W, L, D) tensor per sentence, or (T+1, W, L, D) with all_iterations (the initial
    state, then the state after each iteration). Words the tokenizer gives no piece get zero rows.
    """
    return [item.states.cpu() for batch in _settle(model, tokenizer, sentences, num_iterations=num_iterations,
                                                    batch_size=batch_size, device=device, all_iterations=all_iterations,
                                                    pieces=False, progress=progress) for item in batch]


@dataclass
class _Settled:
    text: str
    units: list[str]  # words, or pieces
    states: torch.Tensor  # (W, L, D) or (T+1, W, L, D) unit rows, on the model's device
    windows: int


@dataclass
class _Window:
    sentence: int  # index in the batch
    input_ids: list[int]
    word_ids: list[int | None]  # relative to the window's first word
    num_words: int


def _settle(model, tokenizer, sentences, *, num_iterations, batch_size, device, all_iterations, pieces, progress) -> Iterator[list[_Settled]]:
    """Run the model over ``sentences`` in batches; yield one list of _Settled per batch."""
    from tqdm.auto import tqdm

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    base = getattr(model, "base_model", model)
    device = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    base.to(device).eval()
    cfg = base.config
    T = cfg.num_iterations if num_iterations is None else num_iterations
    empty = torch.zeros(((T + 1,) if all_iterations else ()) + (0, cfg.num_levels, cfg.hidden_size), device=device)
    max_len = _max_pieces(cfg, tokenizer)
    if isinstance(sentences, str):
        sentences = [sentences]
    total = len(sentences) if hasattr(sentences, "__len__") else None
    it = iter(sentences)
    with tqdm(total=total, unit="sent", disable=not progress, dynamic_ncols=True) as bar:
        while chunk := list(itertools.islice(it, batch_size)):
            texts = [s if isinstance(s, str) else " ".join(s) for s in chunk]
            words = [s.split() if isinstance(s, str) else [str(w) for w in s] for s in chunk]
            windows = _windows(tokenizer, words, max_len)
            states = _run_windows(base, tokenizer.pad_token_id, windows, num_iterations, batch_size, device, all_iterations, pieces)
            parts: list[list[tuple[_Window, torch.Tensor]]] = [[] for _ in chunk]
            for window, s in zip(windows, states):
                parts[window.sentence].append((window, s))
            yield [_assemble(texts[i], words[i], parts[i], empty, all_iterations, pieces, tokenizer) for i in range(len(chunk))]
            bar.update(len(chunk))


def _max_pieces(config, tokenizer) -> int:
    """Longest piece sequence (special tokens included) the model and tokenizer accept."""
    limit = config.max_position_embeddings
    tok_limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(tok_limit, int) and 0 < tok_limit < limit:
        limit = tok_limit
    return limit


def _windows(tokenizer, words: list[list[str]], max_len: int) -> list[_Window]:
    """Tokenize a batch; split sentences with more pieces than ``max_len`` into windows of words."""
    nonempty = [i for i, w in enumerate(words) if w]
    if not nonempty:
        return []
    enc = tokenizer([words[i] for i in nonempty], is_split_into_words=True, truncation=False, verbose=False)
    out = []
    for row, i in enumerate(nonempty):
        ids = enc["input_ids"][row]
        if len(ids) <= max_len:
            out.append(_Window(i, ids, enc.word_ids(row), len(words[i])))
        else:
            out += _split(tokenizer, i, words[i], enc.word_ids(row), max_len)
    return out


def _split(tokenizer, sentence: int, words: list[str], word_ids: list[int | None], max_len: int) -> list[_Window]:
    """Greedy windows of whole words whose pieces fit ``max_len`` (special tokens included)."""
    budget = max_len - (len(word_ids) - sum(w is not None for w in word_ids))  # room left by specials
    counts = [0] * len(words)
    for w in word_ids:
        if w is not None:
            counts[w] += 1
    spans, start, used = [], 0, 0
    for w, c in enumerate(counts):
        if used + c > budget and w > start:
            spans.append((start, w))
            start, used = w, 0
        used += c
        if c > budget:
            warnings.warn(f"word {w} of sentence {sentence} has {c} pieces, more than fit in the model ({budget}); "
                          "only its first pieces are used", stacklevel=4)
    spans.append((start, len(words)))
    enc = tokenizer([words[a:b] for a, b in spans], is_split_into_words=True, truncation=True, max_length=max_len, verbose=False)
    return [_Window(sentence, enc["input_ids"][k], enc.word_ids(k), b - a) for k, (a, b) in enumerate(spans)]


@torch.inference_mode()
def _run_windows(base, pad_id: int, windows: list[_Window], num_iterations, batch_size, device, all_iterations, pieces) -> list[torch.Tensor]:
    """Settle every window; return its unit states, (U, L, D) or (U, T+1, L, D), unit-norm rows.

    Units are words (pieces pooled with ``pool_to_words``) or, with ``pieces``, the non-special
    pieces. One pooling call serves a whole batch: unit u of the b-th window gets the id
    (units of windows before it) + u.
    """
    out = []
    for k in range(0, len(windows), batch_size):
        batch = windows[k : k + batch_size]
        n = max(len(w.input_ids) for w in batch)
        ids = torch.tensor([w.input_ids + [pad_id] * (n - len(w.input_ids)) for w in batch])  # (B, N)
        mask = (torch.arange(n) < torch.tensor([len(w.input_ids) for w in batch])[:, None]).long()  # (B, N)
        res = base(input_ids=ids.to(device), attention_mask=mask.to(device), num_iterations=num_iterations, output_all_states=all_iterations)
        x = torch.stack(res.all_states, dim=2) if all_iterations else res.states  # (B, N, [T+1,] L, D)
        unit_ids, sizes = _unit_ids(batch, n, pieces)
        pooled = pool_to_words(x.flatten(0, 1).float(), unit_ids, sum(sizes))  # (units, [T+1,] L, D)
        out += F.normalize(pooled, dim=-1).split(sizes)
    return out


def _unit_ids(batch: list[_Window], n: int, pieces: bool) -> tuple[np.ndarray, list[int]]:
    """The unit of each piece of a padded batch, numbered across the batch (NaN: special or padding),
    (B * N,), and the number of units of each window: words, or with ``pieces`` non-special pieces."""
    wid = np.array([w.word_ids + [None] * (n - len(w.word_ids)) for w in batch], dtype=np.float64)  # (B, N), None -> NaN
    is_unit = ~np.isnan(wid)
    if pieces:  # every non-special piece is its own unit
        wid = np.where(is_unit, is_unit.cumsum(1) - 1, np.nan)
    sizes = is_unit.sum(1).tolist() if pieces else [w.num_words for w in batch]
    offsets = np.cumsum(sizes) - sizes  # (B,) units of the windows before each
    return (wid + offsets[:, None]).ravel(), sizes


def _assemble(text, words, parts, empty, all_iterations, pieces, tokenizer) -> _Settled:
    """One sentence from the states of its windows (none for an empty sentence)."""
    if not parts:
        return _Settled(text, [], empty, 0)
    units = words
    if pieces:
        units = [tok for w, _ in parts for tok, wid in zip(tokenizer.convert_ids_to_tokens(w.input_ids), w.word_ids) if wid is not None]
    x = parts[0][1] if len(parts) == 1 else torch.cat([s for _, s in parts])  # (W, [T+1,] L, D)
    return _Settled(text, units, x.transpose(0, 1) if all_iterations else x, len(parts))


# --------------------------------------------------------------------------------------------
# Loading a model, writing results
# --------------------------------------------------------------------------------------------


def load_model(path: str | Path, *, link_mean: str | None = None, link_choice: str | None = None):
    """(model, tokenizer) from a directory written by save_pretrained; errors in one clear line.
    ``link_mean`` / ``link_choice`` (None: the model's own) settle a model with neighbour links with another
    link rule than it was trained with (see GlomTextConfig)."""
    import glomtext  # noqa: F401  (registers the glomtext model type with transformers' Auto classes)
    from safetensors import SafetensorError
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"model directory {str(path)!r} not found")
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{str(path)!r} holds no config.json; is it a glomtext model directory (save_pretrained)?")
    pickled = sorted(f.name for f in path.iterdir() if f.suffix in (".bin", ".pt", ".pth", ".pkl", ".ckpt"))
    if pickled and not any(path.glob("*.safetensors")):
        raise ValueError(f"{str(path)!r} holds its weights only in pickle files ({', '.join(pickled)}); glomtext loads "
                         "weights only from safetensors, because unpickling a file can run any code in it")
    steps = (("config", AutoConfig), ("tokenizer", AutoTokenizer), ("model", AutoModel))
    loaded = {}
    for what, auto in steps:
        try:
            loaded[what] = auto.from_pretrained(path)
        except (OSError, ValueError, KeyError, TypeError, SafetensorError) as e:
            first = next((line.strip() for line in str(e).splitlines() if line.strip()), type(e).__name__)
            hint = " (save the tokenizer into the model directory with save_pretrained)" if what == "tokenizer" else ""
            raise ValueError(f"cannot load the {what} from {str(path)!r}: {first.rstrip(':')}{hint}") from e
        if what == "config" and loaded[what].model_type != "glomtext":
            raise ValueError(f"{str(path)!r} holds a {loaded[what].model_type!r} model, not a glomtext one")
    settle_with(loaded["model"].config, str(path), link_mean=link_mean, link_choice=link_choice)
    return loaded["model"], loaded["tokenizer"]


def settle_with(config, label: str, **rule: str | None) -> None:
    """Set ``link_mean`` / ``link_choice`` of a loaded model's config (None keeps the model's); ValueError
    for a value outside the config's choices or a model without neighbour links."""
    from glomtext.configuration_glomtext import LINK_CHOICES, LINK_MEANS

    rule = {k: v for k, v in rule.items() if v is not None}
    if rule and config.consensus_prior in ("none", "dependency"):
        raise ValueError(f"{', '.join(rule)}: the model {label} has no neighbour links (consensus_prior {config.consensus_prior!r})")
    for field, value in rule.items():
        allowed = {"link_mean": LINK_MEANS, "link_choice": LINK_CHOICES}[field]
        if value not in allowed:
            raise ValueError(f"{field} {value!r}: choose from {', '.join(allowed)}")
        setattr(config, field, value)


def write_jsonl(results: Iterable[SentenceIslands], out) -> int:
    """Write one JSON object per result to the text file ``out``; returns how many were written."""
    n = 0
    for r in results:
        out.write(json.dumps(r.to_dict(), ensure_ascii=False) + "\n")
        n += 1
    return n
