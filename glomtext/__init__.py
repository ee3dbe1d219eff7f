"""glomtext: Hinton's GLOM for text.

Importing glomtext registers the model with transformers' Auto classes, so
``AutoModel.from_pretrained(dir)`` and ``AutoModelForMaskedLM.from_pretrained(dir)`` work on saved runs.
"""

from transformers import AutoConfig, AutoModel, AutoModelForMaskedLM

from .configuration_glomtext import GlomTextConfig
from .modeling_glomtext import GlomTextForMaskedLM, GlomTextModel

__version__ = "0.1.0"

AutoConfig.register(GlomTextConfig.model_type, GlomTextConfig, exist_ok=True)
AutoModel.register(GlomTextConfig, GlomTextModel, exist_ok=True)
AutoModelForMaskedLM.register(GlomTextConfig, GlomTextForMaskedLM, exist_ok=True)


def __getattr__(name):
    # the islands API is imported lazily so `import glomtext` stays light
    if name in ("extract_islands", "find_islands", "word_states"):
        from . import islands

        return getattr(islands, name)
    raise AttributeError(f"module 'glomtext' has no attribute {name!r}")


__all__ = ["GlomTextConfig", "GlomTextModel", "GlomTextForMaskedLM", "extract_islands", "find_islands", "word_states"]
