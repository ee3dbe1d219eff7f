"""From word pieces to words: pooling column states of the pieces of each word."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from glomtext.modeling_glomtext import host_tensor


def pool_to_words(piece_states: torch.Tensor, word_ids: Sequence[int | None] | np.ndarray, num_words: int | None = None) -> torch.Tensor:
    """Mean of the states of each word's pieces.

    piece_states: (N, *rest) one row per piece (special tokens and padding included).
    word_ids:     length N; the word index of each piece, None (or NaN in an array) for special
                  tokens / padding (what a fast tokenizer's ``BatchEncoding.word_ids(i)`` returns).
    returns:      (W, *rest) with W = num_words or 1 + the largest word id. A word with no piece
                  (a tokenizer can drop characters it does not know) gets a zero row.
    """
    ids = np.asarray(word_ids, dtype=np.float64)  # (N,) None -> NaN, converted in C
    if ids.shape != (piece_states.shape[0],):
        raise ValueError(f"{len(ids)} word ids for {piece_states.shape[0]} pieces")
    keep = np.flatnonzero(~np.isnan(ids))  # (K,) pieces that belong to a word
    wid = ids[keep].astype(np.int64)  # (K,)
    if num_words is None:
        num_words = 1 + int(wid.max(initial=-1))
    out = piece_states.new_zeros((num_words, *piece_states.shape[1:]))
    if not len(keep):
        return out
    idx, wid = host_tensor(np.stack([keep, wid]), piece_states.device)  # one copy: (2, K)
    out.index_add_(0, wid, piece_states[idx])
    counts = torch.zeros(num_words, device=piece_states.device, dtype=piece_states.dtype)
    counts.index_add_(0, wid, torch.ones_like(wid, dtype=piece_states.dtype))
    return out / counts.clamp(min=1).view(-1, *([1] * (piece_states.dim() - 1)))
