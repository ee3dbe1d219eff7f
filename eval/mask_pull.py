"""Do a model's neighbour links reach for [MASK] columns? (a diagnostic of masked-word training, dev half only)

Masked-word filling shows the model which columns are to be filled: with whole-word masking every
piece of a chosen word is [MASK]. Links that help fill it can then learn to join whatever neighbour
is [MASK], which never occurs at inference. For one word per sentence (drawn with --seed, never the
first or last), this prints the mean link between that word and its two neighbours at each level,
once with the word as it is and once with the word replaced by [MASK]; the gap is the pull:

    python eval/mask_pull.py --model runs/x --treebank 'nltk:treebank/wsj_00??.mrg' --max-sentences 300
"""

from __future__ import annotations

import argparse
import json
import random

import torch

from glomtext.evaluation.cli import add_study_arguments, load_study_model, read_study_treebank
from glomtext.evaluation.constituency import prepare_golds
from glomtext.evaluation.systems import GlomText
from glomtext.islands import word_links


def link_with(links: torch.Tensor, i: int) -> torch.Tensor:
    """Mean link (L,) between word i and its two neighbours, from (L, W-1) neighbour links."""
    return (links[:, i - 1] + links[:, i]) / 2


def mask_pull(glom: GlomText, sentences: list[list[str]], seed: int = 0) -> dict:
    """{"real": [per level], "mask": [per level]}: mean link with the drawn word, as it is and as [MASK]."""
    rng = random.Random(seed)
    picks = [rng.randrange(1, len(w) - 1) for w in sentences]
    masked = [w[:i] + [glom.tokenizer.mask_token] + w[i + 1:] for w, i in zip(sentences, picks)]
    out = {}
    for name, batch in (("real", sentences), ("mask", masked)):
        per_sentence = [link_with(word_links(glom.model, s), i) for s, i in zip(glom.states(batch), picks)]
        out[name] = [round(x, 3) for x in torch.stack(per_sentence).mean(0).tolist()]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, nargs="+", help="one model with a constituent consensus_prior, or several")
    add_study_arguments(p, max_sentences=300)
    p.add_argument("--seed", type=int, default=0, help="draws the word masked in each sentence")
    args = p.parse_args(argv)
    golds = prepare_golds(*read_study_treebank(p, args))
    sentences = [list(g.words) for g in golds if len(g.words) >= 3]
    if not sentences:
        p.error(f"--treebank {args.treebank}: no sentence of three or more words")
    for model in args.model:
        glom = load_study_model(p, args, model, tree_readout="links")
        print(json.dumps({"model": model, "sentences": len(sentences), **mask_pull(glom, sentences, args.seed)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
