"""From word pieces to words: pooling column states of the pieces of each word."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from glomtext.modeling_glomtext import host_tensor


def pool_to_words(piece_states: torch.Tensor, word_ids: Sequence[int | None], num_words: int | None = None) -> torch.Tensor:
    """Mean of the states of each word's pieces.

    piece_states: (N, *rest) one row per piece (special tokens and padding included).
    word_ids:     length N; the word index of each piece, None for special tokens / padding
                  (what a fast tokenizer's ``BatchEncoding.word_ids(i)`` returns).
    returns:      (W, *rest) with W = num_words or 1 + the largest word id. A word with no piece
                  (a tokenizer can drop characters it does not know) gets a zero row.
    """
    if len(word_ids) != piece_states.shape[0]:
        raise ValueError(f"{len(word_ids)} word ids for {piece_states.shape[0]} pieces")
    keep = [i for i, w in enumerate(word_ids) if w is not None]
    if num_words is None:
        num_words = 1 + max((word_ids[i] for i in keep), default=-1)
    out = piece_states.new_zeros((num_words, *piece_states.shape[1:]))
    if not keep:
        return out
    idx = host_tensor(keep, piece_states.device)
    wid = host_tensor([word_ids[i] for i in keep], piece_states.device)
    out.index_add_(0, wid, piece_states[idx])
    counts = torch.zeros(num_words, device=piece_states.device, dtype=piece_states.dtype)
    counts.index_add_(0, wid, torch.ones_like(wid, dtype=piece_states.dtype))
    return out / counts.clamp(min=1).view(-1, *([1] * (piece_states.dim() - 1)))
