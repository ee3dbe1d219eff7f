"""Configuration of a GLOM-for-text model (see ``GLOM.md`` for the mechanisms named here)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from transformers import PretrainedConfig

ATTENTION_REACH = ("full", "local", "local_sparse")
TOP_DOWN_POSITION = ("absolute", "island")
CONSENSUS_PRIOR = ("none", "constituent", "constituent_learned", "constituent_front_end", "dependency")
LINK_MEANS = ("geometric", "arithmetic")
LINK_CHOICES = ("free", "open")
CONTRIBUTIONS = ("previous", "bottom_up", "top_down", "consensus")


class GlomTextConfig(PretrainedConfig):
    r"""Configuration for [`GlomTextModel`] and [`GlomTextForMaskedLM`].

    Columns and levels (GLOM.md 1):
        vocab_size, hidden_size (D, the width of every level embedding), num_levels (L),
        max_position_embeddings, pad_token_id.
    Front end (below level 1):
        backbone: name or path of a pretrained BERT-family encoder it was built from (informational;
            `GlomTextForMaskedLM.from_backbone` loads it), or None for BERT-style embeddings trained
            from scratch.
        backbone_config: the backbone's config as a dict (set by `from_backbone`); the architecture is
            rebuilt from it, the weights come from the checkpoint.
        freeze_backbone: keep the backbone's weights fixed (and in eval mode).
        backbone_layer: which hidden layer of the backbone feeds level 1 (-1 = last).
    Update rule (GLOM.md 3):
        mlp_ratio, mlp_layers: hidden width (ratio x D) and number of hidden layers of the per-level
            bottom-up and top-down MLPs.
        position_features: size of the sinusoidal position code given to the top-down MLPs.
        top_down_position: "absolute" (the column index) or "island" (offset from the attention-weighted
            centre of the column's island at the level above).
        contribution_weights: initial weights of (previous, bottom_up, top_down, consensus), the same for
            every level; learn_contribution_weights makes them per-level learned parameters.
        consensus_beta: inverse temperature of consensus attention, a float or one per level; learn_beta
            makes it learned.
        consensus_self_weight: consensus_i = w * x_i + (1 - w) * (attention over the *other* columns).
        consensus_prior: "none" (attention as above; islands may be discontinuous) or "constituent" (a
            Tree-Transformer-style prior: each column picks its left or right neighbour, adjacent columns
            that pick each other are linked, links only grow with level, and the attention of i to j is
            scaled by the product of the links between them, so islands are nested contiguous spans;
            the weight not given to others stays on the column itself); "constituent_learned": the same
            prior with the neighbour choice made by learned per-level query and key projections of the
            level embeddings (as Tree Transformer does) instead of the embeddings themselves;
            "constituent_front_end": the choice made once per sentence from the front end alone (two
            convolutions over it, then per-level query and key projections, as StructFormer's parser reads
            the non-contextual embeddings), so it depends on the nearby word pieces, not on the settling.
            "dependency": StructFormer's dependency-constrained attention instead (Shen et al. 2021): the same
            convolutions give syntactic distances and heights, hence each column's parent distribution, and
            column i attends to j in proportion to sigmoid(beta <z_i, z_j>) times w_l p(j parent of i) +
            (1 - w_l) p(j child of i) (w_l learned per level); trees are read from the distances.
        link_mean: how the constituent priors link two neighbours from their choices: "geometric" (Tree
            Transformer's sqrt(p(i -> i+1) p(i+1 -> i)): both must choose each other) or "arithmetic" (the
            average: either choice half-links them, so a word can join a determiner that chooses its noun).
        link_choice: "free" (Tree Transformer's: a column chooses between its neighbours afresh at every level)
            or "open" (above level 0 each choice is weighted by how open that side still is, 1 - the link
            below, so a constituent closed on one side reaches to the other: "the" in "join the board" joins
            "board" at level 0, then "join").
        link_neither: the constituent priors' columns may also choose neither neighbour (a third option with a
            learned per-level logit), so no column is made to link, not even one at the edge of the sentence,
            which otherwise must choose its one neighbour (Tree Transformer's rule).
        detach_target_links: in training, the neighbour links of a pair touching a masked-word target get no
            gradient (their values still shape consensus), so that links learn from pairs of visible words and
            cannot learn to reach for [MASK] columns, which never occur at inference ("constituent" and
            "constituent_learned" priors).
    Reach (GLOM.md 4), chosen by `attention_reach`:
        "full": every level sees every column;
        "local": level l (0-based) sees columns within reach_window * 2**l;
        "local_sparse": as "local", and the upper half of the levels also sees reach_sparse_keys columns
            on each side at strides of 2 * its local radius, so the cost per level stays constant as the
            sentence grows while the reach spans it.
    Settling (GLOM.md 5): num_iterations (T, overridable per call); checkpoint_iterations recomputes the
        iterations in the backward pass (two-level, segments of ~sqrt(T)), so memory grows with sqrt(T).
    Training (GLOM.md 7): mlm_level (the level the MLM head reads), island_loss_weight and
        island_loss_temperature (the island regulariser), tie_word_embeddings.
    """

    model_type = "glomtext"

    def __init__(
        self,
        vocab_size: int = 8000,
        hidden_size: int = 128,
        num_levels: int = 4,
        num_iterations: int = 8,
        max_position_embeddings: int = 512,
        pad_token_id: int = 0,
        layer_norm_eps: float = 1e-12,
        initializer_range: float = 0.02,
        hidden_dropout_prob: float = 0.0,
        backbone: str | None = None,
        backbone_config: dict | None = None,
        freeze_backbone: bool = True,
        backbone_layer: int = -1,
        mlp_ratio: float = 2.0,
        mlp_layers: int = 1,
        position_features: int = 32,
        top_down_position: str = "absolute",
        contribution_weights: Sequence[float] = (0.25, 0.25, 0.25, 0.25),
        learn_contribution_weights: bool = True,
        consensus_beta: float | Sequence[float] = 8.0,
        learn_beta: bool = True,
        consensus_self_weight: float = 0.0,
        consensus_prior: str = "none",
        link_mean: str = "geometric",
        link_choice: str = "free",
        link_neither: bool = False,
        detach_target_links: bool = False,
        attention_reach: str = "local_sparse",
        reach_window: int = 2,
        reach_sparse_keys: int = 8,
        checkpoint_iterations: bool = False,
        mlm_level: int = 0,
        island_loss_weight: float = 0.1,
        island_loss_temperature: float = 0.1,
        tie_word_embeddings: bool = True,
        **kwargs,
    ):
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_levels = num_levels
        self.num_iterations = num_iterations
        self.max_position_embeddings = max_position_embeddings
        self.layer_norm_eps = layer_norm_eps
        self.initializer_range = initializer_range
        self.hidden_dropout_prob = hidden_dropout_prob
        self.backbone = backbone
        self.backbone_config = backbone_config
        self.freeze_backbone = freeze_backbone
        self.backbone_layer = backbone_layer
        self.mlp_ratio = mlp_ratio
        self.mlp_layers = mlp_layers
        self.position_features = position_features
        self.top_down_position = top_down_position
        self.contribution_weights = list(contribution_weights)
        self.learn_contribution_weights = learn_contribution_weights
        self.consensus_beta = list(consensus_beta) if isinstance(consensus_beta, (list, tuple)) else consensus_beta
        self.learn_beta = learn_beta
        self.consensus_self_weight = consensus_self_weight
        self.consensus_prior = consensus_prior
        self.link_mean = link_mean
        self.link_choice = link_choice
        self.link_neither = link_neither
        self.detach_target_links = detach_target_links
        self.attention_reach = attention_reach
        self.reach_window = reach_window
        self.reach_sparse_keys = reach_sparse_keys
        self.checkpoint_iterations = checkpoint_iterations
        self.mlm_level = mlm_level
        self.island_loss_weight = island_loss_weight
        self.island_loss_temperature = island_loss_temperature
        super().__init__(pad_token_id=pad_token_id, tie_word_embeddings=tie_word_embeddings, **kwargs)
        self.validate_glom()

    @property
    def betas(self) -> list[float]:
        """Initial consensus inverse temperature of each level."""
        b = self.consensus_beta
        return list(b) if isinstance(b, list) else [float(b)] * self.num_levels

    def validate_glom(self) -> None:
        """Reject values that would fail later deep inside the model, naming the field."""

        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise ValueError(f"GlomTextConfig: {msg}")

        for name in ("vocab_size", "hidden_size", "num_levels", "num_iterations", "max_position_embeddings", "mlp_layers"):
            v = getattr(self, name)
            need(isinstance(v, int) and v >= 1, f"{name} must be a positive integer, got {v!r}")
        need(self.num_levels >= 2, f"num_levels must be >= 2 (a part and a whole), got {self.num_levels!r}")
        need(self.mlp_ratio > 0, f"mlp_ratio must be > 0, got {self.mlp_ratio!r}")
        need(isinstance(self.position_features, int) and self.position_features >= 2 and self.position_features % 2 == 0,
             f"position_features must be an even integer >= 2, got {self.position_features!r}")
        need(self.top_down_position in TOP_DOWN_POSITION,
             f"top_down_position must be one of {TOP_DOWN_POSITION}, got {self.top_down_position!r}")
        need(self.consensus_prior in CONSENSUS_PRIOR,
             f"consensus_prior must be one of {CONSENSUS_PRIOR}, got {self.consensus_prior!r}")
        need(self.link_mean in LINK_MEANS, f"link_mean must be one of {LINK_MEANS}, got {self.link_mean!r}")
        need(self.link_choice in LINK_CHOICES, f"link_choice must be one of {LINK_CHOICES}, got {self.link_choice!r}")
        need(isinstance(self.link_neither, bool), f"link_neither must be true or false, got {self.link_neither!r}")
        need(not self.link_neither or self.consensus_prior.startswith("constituent"),
             f"link_neither needs a constituent consensus_prior (with neighbour links), got {self.consensus_prior!r}")
        need(isinstance(self.detach_target_links, bool), f"detach_target_links must be true or false, got {self.detach_target_links!r}")
        need(not self.detach_target_links or self.consensus_prior in ("constituent", "constituent_learned"),
             f"detach_target_links needs links computed from the states (consensus_prior constituent or constituent_learned), "
             f"got {self.consensus_prior!r}")
        need(self.attention_reach in ATTENTION_REACH,
             f"attention_reach must be one of {ATTENTION_REACH}, got {self.attention_reach!r}")
        need(isinstance(self.reach_window, int) and self.reach_window >= 1, f"reach_window must be an integer >= 1, got {self.reach_window!r}")
        need(isinstance(self.reach_sparse_keys, int) and self.reach_sparse_keys >= 0,
             f"reach_sparse_keys must be an integer >= 0, got {self.reach_sparse_keys!r}")
        w = self.contribution_weights
        need(len(w) == len(CONTRIBUTIONS) and all(x > 0 for x in w),
             f"contribution_weights must be {len(CONTRIBUTIONS)} positive numbers for {CONTRIBUTIONS}, got {w!r}")
        betas = self.betas
        need(len(betas) == self.num_levels, f"consensus_beta has {len(betas)} values for {self.num_levels} levels")
        need(all(b > 0 for b in betas), f"consensus_beta must be > 0, got {self.consensus_beta!r}")
        need(0.0 <= self.consensus_self_weight < 1.0, f"consensus_self_weight must be in [0, 1), got {self.consensus_self_weight!r}")
        need(-self.num_levels <= self.mlm_level < self.num_levels,
             f"mlm_level must index one of the {self.num_levels} levels, got {self.mlm_level!r}")
        need(self.island_loss_weight >= 0, f"island_loss_weight must be >= 0, got {self.island_loss_weight!r}")
        need(self.island_loss_temperature > 0, f"island_loss_temperature must be > 0, got {self.island_loss_temperature!r}")
        need(0.0 <= self.hidden_dropout_prob < 1.0, f"hidden_dropout_prob must be in [0, 1), got {self.hidden_dropout_prob!r}")
        need(self.backbone_config is None or isinstance(self.backbone_config, dict),
             "backbone_config must be a dict (a backbone config's to_dict()) or None")
        need(math.isfinite(self.initializer_range) and self.initializer_range > 0, "initializer_range must be > 0")
