"""Shared test helpers: planted level states, a tiny tokenizer and a tiny random model."""

from __future__ import annotations

import shutil

import pytest
import torch
from nltk import Tree
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from glomtext import GlomTextConfig, GlomTextForMaskedLM, GlomTextModel

# six words, "he shut the noisy kids up": "shut ... up" is a discontinuous island at level 1
SHUT_UP = [[[0], [1], [2], [3], [4], [5]], [[0], [1, 5], [2, 3, 4]], [[0], [1, 2, 3, 4, 5]], [[0, 1, 2, 3, 4, 5]]]
PLANTED = Tree.fromstring("(S (NP the cat) (VP sat (PP on (NP the mat))))")

# torch.compile's CPU backend (inductor) builds C++: tests of --torch_compile need a compiler
needs_cxx = pytest.mark.skipif(not (shutil.which("g++") or shutil.which("clang++")), reason="torch.compile on CPU needs a C++ compiler")

# ------------------------------------------------------------------------------------------------


def plant(groups_per_level: list[list[list[int]]], num_words: int, dim: int = 32, noise: float = 0.0) -> torch.Tensor:
    """(W, L, D) states in which each group of each level shares one basis vector (orthogonal groups)."""
    x = torch.zeros(num_words, len(groups_per_level), dim)
    basis = iter(torch.eye(dim))
    for level, groups in enumerate(groups_per_level):
        for group in groups:
            v = next(basis)
            for w in group:
                x[w, level] = v
    return x + noise * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))


def groups_from_tree(tree: Tree) -> list[list[list[int]]]:
    """Nested islands of a tree: at level l, each word's island is its largest ancestor whose
    subtree has at most l + 1 levels of internal nodes (so phrases form bottom-up by height)."""

    def depth(t) -> int:
        return 0 if isinstance(t, str) else 1 + max(depth(c) for c in t)

    num_levels = depth(tree)

    def collect(t, start: int, level: int, out: list) -> int:
        n = 1 if isinstance(t, str) else len(t.leaves())
        if isinstance(t, str) or depth(t) <= level + 1:
            out.append(list(range(start, start + n)))
        else:
            for c in t:
                start = collect(c, start, level, out)
            return start
        return start + n

    levels = []
    for level in range(num_levels):
        out: list = []
        collect(tree, 0, level, out)
        levels.append(out)
    return levels


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A BERT-style WordPiece tokenizer trained in memory on three sentences."""
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    corpus = ["he shut the noisy kids up .", "the cat sat on the mat .", "new york is a big city ."]
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.train_from_iterator(corpus, trainers.WordPieceTrainer(vocab_size=100, special_tokens=specials))
    tok.post_processor = processors.BertProcessing(("[SEP]", tok.token_to_id("[SEP]")), ("[CLS]", tok.token_to_id("[CLS]")))
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]")


def tiny_model(max_position_embeddings: int = 64, seed: int = 0, **overrides) -> tuple[GlomTextModel, PreTrainedTokenizerFast]:
    tokenizer = tiny_tokenizer()
    torch.manual_seed(seed)
    config = GlomTextConfig(vocab_size=len(tokenizer), hidden_size=32, num_levels=3, num_iterations=3,
                            max_position_embeddings=max_position_embeddings, position_features=8, **overrides)
    return GlomTextModel(config).eval(), tokenizer


def save_tiny_model(path, max_position_embeddings: int = 64, **overrides) -> None:
    """A tiny random masked-LM checkpoint + tokenizer, as `glomtext pretrain` would leave them."""
    tokenizer = tiny_tokenizer()
    torch.manual_seed(0)
    config = GlomTextConfig(vocab_size=len(tokenizer), hidden_size=32, num_levels=3, num_iterations=3,
                            max_position_embeddings=max_position_embeddings, position_features=8, **overrides)
    GlomTextForMaskedLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
