"""t-SNE map of sentence embeddings of several doc sets (paper, appendix B).

The paper embeds the training, test and synthetic sentences, projects them to
2-D with t-SNE and looks at whether the synthetic sentences fill the parts of
the test distribution the few training sentences miss. Besides the plot, this
measures that directly: for every reference (test) sentence, the cosine
similarity of its nearest neighbour in each other set and in their union.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy

from ..errors import Errors
from ..knowledge.label_merging import load_embedding_model
from .plotting import display_labels, font_context, new_figure, save_figure

MIN_SENTENCES = 5


@dataclass
class EmbeddingMap:
    """2-D t-SNE coordinates of every set's sentences, and nearest-neighbour coverage."""

    names: List[str]
    texts: Dict[str, List[str]]
    coordinates: Dict[str, numpy.ndarray]  # name -> (n, 2)
    reference: Optional[str]
    # other set (or "+"-joined union) -> mean nearest-neighbour cosine of the reference sentences
    coverage: Dict[str, float]

    def to_dict(self) -> Dict[str, Any]:
        return {
            "reference": self.reference,
            "coverage": {k: round(v, 4) for k, v in self.coverage.items()},
            "sets": {
                name: [
                    {"text": text, "x": round(float(x), 4), "y": round(float(y), 4)}
                    for text, (x, y) in zip(self.texts[name], self.coordinates[name])
                ]
                for name in self.names
            },
        }


def embed_texts(texts: Sequence[str], model: Any = None, batch_size: int = 64) -> numpy.ndarray:
    """Unit-length sentence embeddings (sentence-transformers model name or path;
    default: the offline all-MiniLM-L6-v2 package)."""
    encoder = load_embedding_model(model)
    vectors = encoder.encode(
        list(texts), batch_size=batch_size, convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False
    )
    return numpy.asarray(vectors, dtype="float32")


def nearest_similarity(queries: numpy.ndarray, pool: numpy.ndarray) -> numpy.ndarray:
    """For each (unit-length) query vector, the cosine similarity of its nearest
    neighbour in ``pool``."""
    best = numpy.full(len(queries), -1.0, dtype="float32")
    for start in range(0, len(pool), 4096):
        best = numpy.maximum(best, (queries @ pool[start : start + 4096].T).max(axis=1))
    return best


def build_embedding_map(
    sets: Mapping[str, Sequence[str]],
    *,
    reference: Optional[str] = "test",
    model: Any = None,
    perplexity: float = 30.0,
    seed: int = 0,
) -> EmbeddingMap:
    """Embed every set's sentences, project them together with t-SNE and
    measure how well the other sets cover the reference set.

    sets (Mapping[str, Sequence[str]]): set name -> sentences, e.g. train,
        test, synthetic.
    reference (Optional[str]): the set whose coverage is measured (skipped
        when absent from ``sets``).
    perplexity (float): t-SNE perplexity; lowered for small samples.
    """
    names = [name for name, texts in sets.items() if len(texts)]
    texts = {name: [str(t) for t in sets[name]] for name in names}
    total = sum(len(t) for t in texts.values())
    if total < MIN_SENTENCES:
        raise ValueError(Errors.KF405.format(n=total, minimum=MIN_SENTENCES))
    if perplexity <= 0:
        raise ValueError(
            Errors.KF402.format(arg="perplexity", value=perplexity, hint="Use a positive number, e.g. 30.")
        )
    vectors = embed_texts([t for name in names for t in texts[name]], model)
    try:
        from sklearn.manifold import TSNE
    except ImportError:
        raise ImportError(Errors.KF400) from None
    # t-SNE needs perplexity < n_samples; keep at least 3 neighbours per point.
    effective = min(perplexity, max(1.0, (total - 1) / 3.0))
    points = TSNE(n_components=2, perplexity=effective, init="pca", random_state=seed, metric="cosine").fit_transform(
        vectors
    )
    bounds = numpy.cumsum([0] + [len(texts[name]) for name in names])
    by_set = {name: vectors[bounds[i] : bounds[i + 1]] for i, name in enumerate(names)}
    coordinates = {name: points[bounds[i] : bounds[i + 1]] for i, name in enumerate(names)}
    coverage: Dict[str, float] = {}
    ref = reference if reference in by_set else None
    if ref is not None:
        others = [name for name in names if name != ref]
        for name in others:
            coverage[name] = float(nearest_similarity(by_set[ref], by_set[name]).mean())
        if len(others) > 1:
            union = numpy.concatenate([by_set[name] for name in others])
            coverage["+".join(others)] = float(nearest_similarity(by_set[ref], union).mean())
    return EmbeddingMap(names, texts, coordinates, ref, coverage)


def plot_embedding_map(embedding_map: EmbeddingMap, path: Path, *, title: Optional[str] = None) -> None:
    """Scatter plot of the t-SNE coordinates, one colour per set."""
    shown, _, font = display_labels(embedding_map.names)
    markers = ("o", "^", "s", "D", "v", "P", "X")
    figure = new_figure(6.5, 5.5)
    with font_context(font):
        axes = figure.add_subplot(1, 1, 1)
        sets = list(enumerate(zip(embedding_map.names, shown)))
        # Largest set first, so that small sets (e.g. K=250 training) stay visible on top.
        for i, (name, label) in sorted(sets, key=lambda s: -len(embedding_map.texts[s[1][0]])):
            xy = embedding_map.coordinates[name]
            axes.scatter(
                xy[:, 0], xy[:, 1], s=10, alpha=0.6, marker=markers[i % len(markers)], label=f"{label} ({len(xy)})"
            )
        axes.legend(fontsize=8, markerscale=1.5)
        axes.set_xticks([])
        axes.set_yticks([])
        axes.set_title(title or "t-SNE of sentence embeddings", fontsize=10)
        save_figure(figure, path)
