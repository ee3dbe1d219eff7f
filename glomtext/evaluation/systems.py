"""The model-facing glue: word vectors per level from a glomtext model or per layer from a backbone.

Both kinds of system turn word lists into one ``(W, L, D)`` tensor of unit-norm word vectors per
sentence (L = the model's levels, or the backbone's embedding output plus each layer), computed in
length-sorted chunks with a progress bar; everything downstream (trees, islands, unit scores) only
sees those tensors.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F

from glomtext.paths import resolve_backbone

# PTB escapes the brackets and writes quotes as `` and ''; models read plain text.
PTB_ESCAPES = {"-LRB-": "(", "-RRB-": ")", "-LSB-": "[", "-RSB-": "]", "-LCB-": "{", "-RCB-": "}", "``": '"', "''": '"'}
CHUNK = 256  # sentences per length-sorted chunk


def model_words(words: Sequence[str]) -> list[str]:
    """Words as a model should read them (PTB bracket and quote escapes undone)."""
    return [PTB_ESCAPES.get(w, w) for w in words]


class Backbone:
    """A pretrained BERT-family encoder giving word vectors at every layer."""

    name = "backbone"
    island_options: dict = {}  # its threshold is calibrated per layer where islands are scored (evaluate_units)

    def __init__(self, name_or_path: str, *, batch_size: int = 32, device: str | None = None):
        from transformers import AutoModel, AutoTokenizer

        path = resolve_backbone(name_or_path)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            self.model = AutoModel.from_pretrained(path).eval()
        except (OSError, ValueError) as e:
            raise ValueError(f"cannot load backbone {name_or_path!r}: {str(e).strip().splitlines()[0]}") from e
        self.label = name_or_path
        self.batch_size = batch_size
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model.to(self.device)
        self.n_levels = self.model.config.num_hidden_layers + 1  # the embedding output, then each layer
        self.truncated = 0  # sentences longer than the encoder takes (their last words get zero vectors)

    @torch.inference_mode()
    def states(self, sentences: Sequence[Sequence[str]]) -> list[torch.Tensor]:
        """(W, layers + 1, H) unit-norm word vectors per sentence (mean of each word's pieces)."""
        from glomtext.words import pool_to_words

        out = []
        for k in range(0, len(sentences), self.batch_size):
            batch = [model_words(s) for s in sentences[k : k + self.batch_size]]
            enc = self.tokenizer(batch, is_split_into_words=True, truncation=True, padding=True, return_tensors="pt")
            hidden = self.model(**enc.to(self.device), output_hidden_states=True).hidden_states
            pieces = torch.stack(hidden, dim=2)  # (B, N, layers + 1, H)
            for b, words in enumerate(batch):
                word_ids = enc.word_ids(b)
                self.truncated += max((w for w in word_ids if w is not None), default=-1) < len(words) - 1
                out.append(F.normalize(pool_to_words(pieces[b], word_ids, len(words)), dim=-1).cpu())
        return out


class GlomText:
    """A trained glomtext model (directory written by save_pretrained) giving word states per level."""

    name = "glomtext"

    def __init__(self, model_dir: str, *, iterations: int | None = None, batch_size: int = 32, device: str | None = None,
                 tree_levels: Sequence[int] | None = None, right_skew: float | None = None, tree_readout: str = "cosine",
                 link_mean: str | None = None, link_choice: str | None = None, island_options: dict | None = None):
        from glomtext.islands import DEFAULT_METHOD, DEFAULT_THRESHOLD, READOUTS, load_model

        self.model, self.tokenizer = load_model(model_dir, link_mean=link_mean, link_choice=link_choice)
        self.label = model_dir
        self.iterations = iterations
        self.batch_size = batch_size
        self.device = device
        self.n_levels = self.model.config.num_levels
        bad = [lvl for lvl in tree_levels or () if not 0 <= lvl < self.n_levels]
        if bad or (tree_levels is not None and not tree_levels):
            raise ValueError(f"tree levels {list(tree_levels)}: the model {model_dir} has levels 0..{self.n_levels - 1}")
        self.tree_levels = None if tree_levels is None else sorted(set(tree_levels))
        if right_skew is not None and not right_skew > 0:
            raise ValueError(f"right-skew bias must be positive, got {right_skew}")
        self.right_skew = right_skew
        if tree_readout not in READOUTS:
            raise ValueError(f"tree read-out {tree_readout!r}: choose from {', '.join(READOUTS)}")
        if tree_readout.startswith("links") and self.model.config.consensus_prior == "none":
            raise ValueError(f"tree read-out {tree_readout!r}: the model {model_dir} has no constituent consensus_prior, so no links")
        self.tree_readout = tree_readout
        # find_islands' options, defaults filled in (what results.json records)
        self.island_options = {"method": DEFAULT_METHOD, "threshold": DEFAULT_THRESHOLD, "nested": False, **(island_options or {})}
        threshold = self.island_options["threshold"]
        if isinstance(threshold, (list, tuple)) and len(threshold) != self.n_levels:
            raise ValueError(f"island threshold {list(threshold)}: give one value or one per level of the model {model_dir} ({self.n_levels})")

    def distances(self, words: Sequence[str], states: torch.Tensor, readout: str = "cosine", levels: Sequence[int] | None = None) -> torch.Tensor:
        """Adjacent-word distances (W-1,) of one sentence's (W, L, D) states (``glomtext.islands.adjacent_distances``);
        the links read-outs compute the words' neighbour links first (``glomtext.islands.word_links``)."""
        from glomtext.islands import adjacent_distances, word_links

        links = word_links(self.model, states, self.tokenizer, model_words(words)) if readout.startswith("links") else None
        return adjacent_distances(states, readout=readout, levels=levels, links=links)

    def tree(self, words: Sequence[str], states: torch.Tensor, right_skew: float = 0.0):
        """The distance tree read from ``tree_levels`` (all levels by default) of (W, L, D) states with
        ``tree_readout``, with the right-skew bias ``right_skew`` if one is given."""
        from glomtext.trees import right_skewed, tree_from_distances

        d = self.distances(words, states, self.tree_readout, self.tree_levels).tolist()
        return tree_from_distances(list(words), right_skewed(d, right_skew) if right_skew else d)

    def readouts(self) -> dict[str, dict]:
        """Every distance read-out of this model by name, as ``distances`` options: cosine
        (and, with a constituent prior, links) over all levels and at each level alone."""
        every = list(range(self.n_levels))
        levels = {"all levels": every, **{f"level {lvl}": [lvl] for lvl in every}}
        out = {f"cosine, {name}": dict(levels=lv) for name, lv in levels.items()}
        if self.model.config.consensus_prior != "none":
            out |= {f"links, {name}": dict(levels=lv, readout="links") for name, lv in levels.items()}
            out["links top-down, all levels"] = dict(levels=every, readout="links_top_down")
            out["links average-linkage, all levels"] = dict(levels=every, readout="links_average")
        return out

    def trees(self, words: Sequence[str], states: torch.Tensor) -> dict:
        """{system name: tree}: the unbiased tree, and with ``right_skew`` set also the biased one
        (a separate system, ``<name>_right_skew``, since it adds a branching-direction prior)."""
        trees = {self.name: self.tree(words, states)}
        if self.right_skew:
            trees[f"{self.name}_right_skew"] = self.tree(words, states, self.right_skew)
        return trees

    def untrained(self, seed: int = 0) -> GlomText:
        """The control: the same architecture, tokenizer and read-out with fresh weights (seeded; a
        pretrained backbone front end keeps its weights). What it scores is what the read-out gives
        without any training, the line a trained model has to rise above."""
        import copy

        control = copy.copy(self)
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            control.model = type(self.model)(self.model.config).eval()
        if self.model.config.backbone_config:
            control.model.front_end.backbone.load_state_dict(self.model.front_end.backbone.state_dict())
        control.name, control.label = "glomtext_untrained", f"{self.label} (untrained, seed {seed})"
        return control

    @property
    def backbone(self) -> str | None:
        """The backbone named in the model's config, if it was built on one."""
        return getattr(self.model.config, "backbone", None)

    def states(self, sentences: Sequence[Sequence[str]]) -> list[torch.Tensor]:
        """(W, L, D) unit-norm word states per sentence after the model has settled."""
        from glomtext.islands import word_states

        return word_states(self.model, self.tokenizer, [model_words(s) for s in sentences],
                           num_iterations=self.iterations, batch_size=self.batch_size, device=self.device)


def iter_states(system, sentences: Sequence[Sequence[str]], progress: bool = True, desc: str = "") -> Iterator[torch.Tensor]:
    """``system.states`` over all sentences, in input order, CHUNK sentences at a time, each chunk
    sorted by length so batches hold sentences of similar length (less padding)."""
    from tqdm.auto import tqdm

    with tqdm(total=len(sentences), desc=desc or system.name, unit="sent", disable=not progress, dynamic_ncols=True) as bar:
        for k in range(0, len(sentences), CHUNK):
            chunk = sentences[k : k + CHUNK]
            order = sorted(range(len(chunk)), key=lambda i: len(chunk[i]))
            states = system.states([chunk[i] for i in order])
            by_input = [None] * len(chunk)
            for i, s in zip(order, states):
                by_input[i] = s
            yield from by_input
            bar.update(len(chunk))


def islands_of(states: Sequence[torch.Tensor], **options) -> list[list[list]]:
    """Islands per sentence and level for a batch of (W, L, D) states; ``options`` are those of
    ``glomtext.islands.find_islands`` (method, threshold, nested), its defaults where not given."""
    from glomtext.islands import find_islands_batch

    return find_islands_batch(list(states), **options)
