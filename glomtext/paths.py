"""Where glomtext looks for data it does not ship.

The development data (treebank sample, NLTK corpora, UD/PARSEME/STREUSLE files) lives outside the
repository. Point at it with ``GLOMTEXT_DATA`` (a folder laid out like ``shared/data``) or with
nltk's own ``NLTK_DATA`` (a folder holding ``corpora/``). Without either, glomtext tries
``../shared/data`` next to the current directory and next to the source checkout.
"""

from __future__ import annotations

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
