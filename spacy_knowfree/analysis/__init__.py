"""Analysis of trained knowfree pipelines and of synthetic data (the paper's
appendices B and C): extension-label logit heatmaps, t-SNE maps of sentence
embeddings and displaCy renderings of predictions."""

from .embedding_map import EmbeddingMap, build_embedding_map, plot_embedding_map
from .extension_logits import ExtensionLogitTable, extension_logit_table, plot_extension_logits
from .span_rendering import render_predictions

__all__ = [
    "EmbeddingMap",
    "ExtensionLogitTable",
    "build_embedding_map",
    "extension_logit_table",
    "plot_embedding_map",
    "plot_extension_logits",
    "render_predictions",
]
