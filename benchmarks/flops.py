"""Analytic matmul FLOPs of one masked-LM training step, for GLOM (glomtext) and for BERT.

A "FLOP" is one multiply or one add: a (m, k) x (k, n) matmul costs 2 m k n, as in
``torch.utils.flop_counter``. Only matmuls are counted (elementwise work, softmax, LayerNorm and the
optimizer are not): these are the FLOPs that a dense-matmul roofline can serve, so achieved FLOP/s
divided by the machine's dense-matmul FLOP/s is a fair utilisation for both models.

Backward: a matmul costs its forward FLOPs once more for each operand that needs a gradient, i.e.
forward + backward = 3x forward when both operands do (activations x weights, or z x z in
consensus attention). GLOM's island regulariser works partly on detached tensors, so some of its
matmuls have no backward or a single one; that is counted as executed.

Recomputation is not counted (activation checkpointing, flash-attention's backward): these are the
model's FLOPs, the usual basis of utilisation (MFU).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from transformers import BertConfig

from glomtext import GlomTextConfig
from glomtext.modeling_glomtext import Neighbourhood, reach_offsets


@dataclass
class StepFlops:
    """Matmul FLOPs of one training step, by named part: forward and backward separately."""

    forward: dict[str, int] = field(default_factory=dict)
    backward: dict[str, int] = field(default_factory=dict)

    def add(self, part: str, flops: int, grads: int) -> None:
        """Count a matmul of `flops` forward FLOPs whose backward computes `grads` (0, 1 or 2) gradients."""
        self.forward[part] = self.forward.get(part, 0) + flops
        self.backward[part] = self.backward.get(part, 0) + grads * flops

    @property
    def total_forward(self) -> int:
        return sum(self.forward.values())

    @property
    def total(self) -> int:
        """Forward + backward: the FLOPs of one training step."""
        return self.total_forward + sum(self.backward.values())

    def by_part(self) -> dict[str, int]:
        """Forward + backward FLOPs of each part."""
        return {part: f + self.backward[part] for part, f in self.forward.items()}


def masked_count(batch_size: int, seq_len: int, mask_fraction: float) -> int:
    """Number of masked positions M in a (batch_size, seq_len) batch; the benchmark masks exactly M."""
    if not 0.0 < mask_fraction <= 1.0:
        raise ValueError(f"mask_fraction must be in (0, 1], got {mask_fraction!r}")
    return max(1, round(mask_fraction * batch_size * seq_len))


def mlp_flops(num_levels: int, dims: list[int], rows: int) -> int:
    """Forward FLOPs of a LevelMLP with layer widths `dims` applied to `rows` columns per level."""
    return sum(2 * num_levels * rows * a * b for a, b in zip(dims, dims[1:]))


def consensus_pairs(config: GlomTextConfig, seq_len: int, sparse_attention: bool | None = None) -> tuple[bool, list[int]]:
    """(dense, pairs): the layout `Neighbourhood` chooses for this length and, per level, the (query,
    key) pairs it scores by matmul for one sequence: N x N (dense); blocked: 3b keys per query of the
    near band, plus 3S of the far band at levels that have one, on lengths padded to whole blocks.

    Asks `Neighbourhood` itself (on a one-row mask), so the count follows the model's own choice.
    """
    dense = None if sparse_attention is None else not sparse_attention
    hood = Neighbourhood(reach_offsets(config), torch.ones(1, seq_len, dtype=torch.long), dense=dense)
    return hood.dense, hood.pairs


def glom_train_flops(config: GlomTextConfig, batch_size: int, seq_len: int, mask_fraction: float,
                     sparse_attention: bool | None = None) -> StepFlops:
    """Matmul FLOPs of one `GlomTextForMaskedLM` training step on (batch_size, seq_len) pieces.

    Per settling iteration (x T): the bottom-up MLP of every level, the top-down MLP of levels 0..L-2
    (input D + position features), and consensus attention at every level: scores (N, D) x (D, K) and
    the weighted sum (N, K) x (K, D) with the (query, key) pairs of `consensus_pairs`.
    Once per step: the island regulariser on the settled state (when island_loss_weight > 0) and the
    MLM head (dense D x D, decoder D x V) on the M masked positions only.
    """
    if config.backbone_config:
        raise ValueError("glom_train_flops counts the trained-from-scratch front end only (backbone_config is set)")
    L, D, T, V = config.num_levels, config.hidden_size, config.num_iterations, config.vocab_size
    H = max(1, int(round(config.mlp_ratio * D)))
    rows = batch_size * seq_len
    _, pairs = consensus_pairs(config, seq_len, sparse_attention)
    bottom_up = mlp_flops(L, [D] + [H] * config.mlp_layers + [D], rows)
    top_down = mlp_flops(L - 1, [D + config.position_features] + [H] * config.mlp_layers + [D], rows)

    def attend(levels: slice = slice(None)) -> int:  # scores, or the weighted sum, of these levels
        return 2 * batch_size * sum(pairs[levels]) * D

    f = StepFlops()
    f.add("bottom_up", T * bottom_up, grads=2)
    f.add("top_down", T * top_down, grads=2)
    f.add("consensus", T * 2 * attend(), grads=2)
    if config.island_loss_weight > 0:
        f.add("island_loss", bottom_up + top_down, grads=2)  # the predictions it trains
        f.add("island_loss", 2 * attend(), grads=0)  # consensus on the detached state (its targets)
        f.add("island_loss", attend() + attend(slice(0, -1)), grads=1)  # negatives: predictions x detached keys
    M = masked_count(batch_size, seq_len, mask_fraction)
    f.add("mlm_head", 2 * M * (D * D + D * V), grads=2)
    return f


def bert_config_like(config: GlomTextConfig, num_attention_heads: int = 4, intermediate_ratio: int = 4) -> BertConfig:
    """A BertConfig of GLOM's width and vocabulary with one layer per settling iteration, dropout off
    (GLOM's default is no dropout), for the side-by-side benchmark."""
    return BertConfig(
        vocab_size=config.vocab_size, hidden_size=config.hidden_size, num_hidden_layers=config.num_iterations,
        num_attention_heads=num_attention_heads, intermediate_size=intermediate_ratio * config.hidden_size,
        max_position_embeddings=config.max_position_embeddings, pad_token_id=config.pad_token_id,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )


def bert_train_flops(config: BertConfig, batch_size: int, seq_len: int) -> StepFlops:
    """Matmul FLOPs of one `BertForMaskedLM` training step on (batch_size, seq_len) pieces.

    Per layer: Q, K, V and output projections (4 D x D), the feed-forward (D x I, I x D), and
    attention scores + weighted sum (2 x N x N x D over all heads). The MLM head (dense D x D,
    decoder D x V) projects ALL positions: BertForMaskedLM computes logits everywhere.
    """
    D, I, V = config.hidden_size, config.intermediate_size, config.vocab_size
    rows = batch_size * seq_len
    layers = config.num_hidden_layers
    f = StepFlops()
    f.add("projections", layers * 2 * rows * 4 * D * D, grads=2)
    f.add("feed_forward", layers * 2 * rows * 2 * D * I, grads=2)
    f.add("attention", layers * 2 * 2 * rows * seq_len * D, grads=2)
    f.add("mlm_head", 2 * rows * (D * D + D * V), grads=2)
    return f
