"""Do the settled word vectors say which words belong together? Perturbed-masking trees (dev half only)

Wu et al. (2020, "Perturbed Masking") read syntax from a masked language model without a probe:
replace word i by [MASK] and see how far every other word's vector moves. Here word i is masked as
whole-word masking masks it in training (each of its pieces becomes [MASK], so no other word moves to
another position), and the impact of word i
on word j is 1 - cos(s_j, s_j without i), s the settled unit-norm word vectors at a level (or the mean
over all levels); a word's impact on itself is set to 0. Three trees are read from the impact matrix F,
none with a branching-direction prior:
- adjacent: the distance between words k and k + 1 is -(F[k, k+1] + F[k+1, k]) / 2, split greedily
  as `glomtext eval` splits its distances;
- average-linkage: adjacent segments merged bottom-up, first those with the highest mean impact
  between them (F + F^T, as `--tree-readout links_average` merges the links' prior);
- top-down (Wu et al.'s MART): each span is split where the mean impact within the two parts minus
  the mean impact across them is largest (a single word's impact within itself counts 0).
Every sentence of n words is read n + 1 times. Run on the development half only:

    python eval/impact_study.py --model runs/x --max-sentences 500 --link-mean arithmetic --link-choice open
"""

from __future__ import annotations

import argparse
import json

import torch
from nltk import Tree

from glomtext.evaluation.cli import add_study_arguments, load_study_model, read_study_treebank
from glomtext.evaluation.constituency import ConstituencyScorer, prepare_golds
from glomtext.evaluation.systems import GlomText, iter_states, model_words
from glomtext.trees import merge_distances, tree_from_distances


def impact(states: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
    """(W, W, L) impacts: [i, j, l] = 1 - cos at level l between word j's vector as read (states: (W, L, D))
    and as read with word i masked (masked: (W, W, L, D), row i); the diagonal is 0."""
    F = 1 - (masked * states.unsqueeze(0)).sum(-1)  # (W masked, W, L)
    return F * (1 - torch.eye(states.shape[0])).unsqueeze(-1)


def masked_word(glom: GlomText, word: str) -> str:
    """[MASK] once per piece of ``word`` (at least once), as whole-word masking replaces it."""
    return glom.tokenizer.mask_token * max(1, len(glom.tokenizer.tokenize(model_words([word])[0])))


def mart_tree(words: list[str], F: torch.Tensor, label: str = "X") -> Tree:
    """Wu et al.'s top-down parse of a (W, W) impact matrix: split each span at the k that maximises
    within(left) + within(right) - mean cross impact (both directions); ties toward the middle, then earlier."""
    def within(a: int, b: int) -> float:  # mean off-diagonal impact of words[a:b]; 0 for one word
        return float(F[a:b, a:b].sum()) / ((b - a) * (b - a - 1)) if b - a > 1 else 0.0

    def build(i: int, j: int):
        if j - i == 1:
            return words[i]
        score = lambda k: within(i, k) + within(k, j) - float(F[i:k, k:j].mean() + F[k:j, i:k].mean())
        k = max(range(i + 1, j), key=lambda k: (score(k), -abs(k - (i + j) / 2), -k))
        return Tree(label, [build(i, k), build(k, j)])

    t = build(0, len(words))
    return t if isinstance(t, Tree) else Tree(label, [t])


TREES = {
    "adjacent": lambda words, F: tree_from_distances(words, (-(F.diagonal(1) + F.diagonal(-1)) / 2).tolist()),
    "average-linkage": lambda words, F: tree_from_distances(words, merge_distances(F + F.T)),
    "top-down": mart_tree,
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    add_study_arguments(p)
    args = p.parse_args(argv)
    golds = prepare_golds(*read_study_treebank(p, args))
    glom = load_study_model(p, args, args.model)
    sentences = [list(g.words) for g in golds]
    variants = [w[:i] + [masked_word(glom, w[i])] + w[i + 1:] for w in sentences for i in range(len(w))]
    states = list(iter_states(glom, sentences, desc="as read"))
    masked = iter(iter_states(glom, variants, desc="one word masked"))
    impacts = [impact(s, torch.stack([next(masked) for _ in w])) for w, s in zip(sentences, states)]
    levels = {"all levels": slice(None), **{f"level {lvl}": slice(lvl, lvl + 1) for lvl in range(glom.n_levels)}}
    for tree_name, make_tree in TREES.items():
        for level_name, at in levels.items():
            scorer = ConstituencyScorer()
            for g, F in zip(golds, impacts):
                scorer.add(g, make_tree(list(g.words), F[:, :, at].mean(-1)))
            r = scorer.result()
            print(json.dumps({"tree": f"impact {tree_name}", "levels": level_name, "untrained": args.untrained,
                              "sentence_f1": round(r["sentence_f1"], 1), "corpus_f1": round(r["corpus_f1"], 1)}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
