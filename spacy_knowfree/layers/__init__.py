"""Thinc + PyTorch layers of the KnowFREE model."""
from .model import build_knowfree_model
from .span_grid import span_grid_head
from .torch_grid import KnowFREEGridEncoder

__all__ = ["build_knowfree_model", "span_grid_head", "KnowFREEGridEncoder"]
