"""Baseline trees, scored on the same sentences in the same run as the model.

* ``left_branching``, ``right_branching``, ``balanced``: fixed shapes (``glomtext.trees``);
* ``random``: random binary trees, each span split at a uniformly random point (i.i.d. uniform
  adjacent distances split greedily top-down); scored for several seeds and averaged;
* ``backbone_distance``: Kim et al. (2020) style distance trees from a pretrained encoder's layers:
  the distance between adjacent words is 1 - cosine of their word vectors (pieces mean-pooled),
  one tree per layer, split greedily top-down by ``glomtext.trees.tree_from_distances``.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from nltk import Tree

from glomtext.trees import balanced, left_branching, right_branching, tree_from_distances

FIXED = {"left_branching": left_branching, "right_branching": right_branching, "balanced": balanced}


def random_tree(words: Sequence[str], rng: random.Random) -> Tree:
    """A random binary tree: every span is split at a uniformly chosen point."""
    return tree_from_distances(words, [rng.random() for _ in range(len(words) - 1)])


def layer_distances(states: torch.Tensor) -> torch.Tensor:
    """1 - cosine between adjacent words at every layer: (W, L, D) -> (L, W - 1)."""
    x = F.normalize(states.float(), dim=-1)
    return (1 - (x[:-1] * x[1:]).sum(-1)).transpose(0, 1)


def distance_trees(words: Sequence[str], states: torch.Tensor) -> list[Tree]:
    """One distance tree per layer of ``states`` (W, L, D)."""
    return [tree_from_distances(words, d.tolist()) for d in layer_distances(states)]
