"""Thinc + PyTorch layers of the KnowFREE model."""

from .char_ngram_embed import build_char_ngram_embed
from .model import build_knowfree_model
from .span_grid import span_grid_head
from .torch_grid import KnowFREEGridEncoder

__all__ = ["build_char_ngram_embed", "build_knowfree_model", "span_grid_head", "KnowFREEGridEncoder"]
