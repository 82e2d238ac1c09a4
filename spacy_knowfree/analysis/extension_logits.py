"""Mean extension-label logits at the predicted target spans (paper, appendix C).

For every span the model predicts (or, with ``positions="gold"``, every gold
span), the logits of all extension labels at that cell of the span grid are
collected; averaging them per target label shows which extension labels the
model ties to which target labels (e.g. ``ENT:人名`` high at ``PER`` spans).
``positions="auto"`` takes the predicted spans, or the gold ones when the
model predicts no span at all in the docs (a model trained for a few steps,
as in a demo run); the table's ``positions`` says which it used.
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy
from spacy.language import Language
from spacy.tokens import Doc

from ..errors import Errors
from ..pipeline_inputs import fresh_copies, require_knowfree, run_upstream
from .plotting import display_labels, font_context, new_figure, save_figure

POSITIONS = ("predicted", "gold", "auto")


@dataclass
class ExtensionLogitTable:
    """Mean extension-label logit (rows) at the spans of each target label (columns)."""

    target_labels: List[str]
    extension_labels: List[str]
    mean_logits: numpy.ndarray  # (n_extension_labels, n_target_labels); NaN where count is 0
    counts: numpy.ndarray  # (n_target_labels,) spans averaged per target label
    positions: str  # where the logits were read: "predicted" or "gold"
    n_docs: int
    skipped: Dict[str, int] = field(default_factory=dict)  # gold spans left out, by reason

    def top_rows(self, n: Optional[int]) -> List[int]:
        """Indices of the ``n`` extension labels that vary most across the
        target labels (all of them for None), in their original order."""
        n_rows = len(self.extension_labels)
        if n is None or n >= n_rows:
            return list(range(n_rows))
        seen = self.counts > 0
        spread = numpy.nan_to_num(self.mean_logits[:, seen].std(axis=1)) if seen.any() else numpy.zeros(n_rows)
        return sorted(numpy.argsort(-spread, kind="stable")[:n].tolist())

    def to_dict(self) -> Dict[str, Any]:
        plain = ("positions", "n_docs", "target_labels", "extension_labels")
        return {
            **{name: getattr(self, name) for name in plain},
            "counts": {label: int(c) for label, c in zip(self.target_labels, self.counts)},
            "mean_logits": {
                ext: {tgt: (None if numpy.isnan(v) else round(float(v), 4)) for tgt, v in zip(self.target_labels, row)}
                for ext, row in zip(self.extension_labels, self.mean_logits)
            },
            "skipped": dict(self.skipped),
        }


def extension_logit_table(
    nlp: Language,
    docs: Sequence[Doc],
    *,
    component: Optional[str] = None,
    positions: str = "predicted",
    batch_size: int = 64,
) -> ExtensionLogitTable:
    """Average the extension-label logits at the target spans of ``docs``.

    nlp (Language): a trained pipeline with a knowfree component that has
        extension labels.
    docs (Sequence[Doc]): the evaluation docs (their gold spans are only read
        with ``positions="gold"`` or ``"auto"``).
    component (Optional[str]): the knowfree component's name; default: the first.
    positions (str): "predicted" (the paper's figure 6) or "gold" spans, or
        "auto": the predicted ones, the gold ones if nothing is predicted.
    """
    if positions not in POSITIONS:
        raise ValueError(
            Errors.KF402.format(arg="positions", value=positions, hint=f"Use one of {', '.join(POSITIONS)}.")
        )
    knowfree = require_knowfree(nlp, component)
    targets, extensions = list(knowfree.labels), list(knowfree.extension_labels)
    if not extensions:
        raise ValueError(Errors.KF403.format(name=knowfree.name))
    n_tgt, width = len(targets), int(knowfree.cfg["max_span_width"])
    kinds = ("predicted", "gold") if positions == "auto" else (positions,)
    sums = {kind: numpy.zeros((len(extensions), n_tgt), dtype="float64") for kind in kinds}
    counts = {kind: numpy.zeros(n_tgt, dtype="int64") for kind in kinds}
    skipped: Dict[str, Dict[str, int]] = {kind: {} for kind in kinds}
    docs = list(docs)
    for start in range(0, len(docs), batch_size):
        batch = docs[start : start + batch_size]
        inputs = run_upstream(nlp, knowfree, fresh_copies(nlp, batch), batch_size)
        logits = [knowfree.model.ops.to_numpy(x) for x in knowfree.predict_with_extensions(inputs)]
        for kind in kinds:
            if kind == "predicted":
                knowfree.set_annotations(inputs, [x[..., :n_tgt] for x in logits])
                spans = [doc.spans[knowfree.key] for doc in inputs]
            else:
                spans = [doc.spans.get(knowfree.key, []) for doc in batch]
            for doc_logits, doc_spans in zip(logits, spans):
                for row, offset, column in _cells(doc_spans, targets, width, skipped[kind]):
                    sums[kind][:, column] += doc_logits[row, offset, n_tgt:]
                    counts[kind][column] += 1
    used = next((kind for kind in kinds if counts[kind].any()), None)
    if used is None:
        where = " or ".join(kinds)
        raise ValueError(Errors.KF404.format(positions=where, key=knowfree.key, n=len(docs), name=knowfree.name))
    with numpy.errstate(invalid="ignore", divide="ignore"):
        means = numpy.where(counts[used] > 0, sums[used] / numpy.maximum(counts[used], 1), numpy.nan)
    return ExtensionLogitTable(targets, extensions, means, counts[used], used, len(docs), skipped[used])


def _cells(spans: Iterable, targets: List[str], width: int, skipped: Dict[str, int]) -> List[Tuple[int, int, int]]:
    """(row, width offset, target column) of every span the grid can hold."""
    index = {label: i for i, label in enumerate(targets)}
    out = []
    for span in spans:
        if span.label_ not in index:
            reason = f"label {span.label_!r} unknown to the model"
        elif not 0 < len(span) <= width:
            reason = f"longer than max_span_width={width}"
        else:
            out.append((span.start, len(span) - 1, index[span.label_]))
            continue
        skipped[reason] = skipped.get(reason, 0) + 1
    return out


def plot_extension_logits(
    table: ExtensionLogitTable, path: Path, *, top: Optional[int] = 40, title: Optional[str] = None
) -> List[str]:
    """Draw the table as a heatmap (target labels across, extension labels down).

    top (Optional[int]): only the extension labels varying most across the
        target labels (None: all).
    RETURNS (List[str]): the extension labels drawn, top to bottom.
    """
    from matplotlib import colormaps

    rows = table.top_rows(top)
    shown_ext, _, font_ext = display_labels([table.extension_labels[i] for i in rows])
    shown_tgt, _, font_tgt = display_labels(table.target_labels)
    values = table.mean_logits[rows]
    finite = values[numpy.isfinite(values)]
    limit = float(numpy.abs(finite).max()) if finite.size else 1.0
    figure = new_figure(max(4.0, 1.0 + 0.8 * len(shown_tgt)), max(3.0, 1.2 + 0.28 * len(rows)))
    with font_context(font_ext or font_tgt):
        axes = figure.add_subplot(1, 1, 1)
        cmap = colormaps["RdBu_r"].with_extremes(bad="#d9d9d9")  # grey: labels without spans
        image = axes.imshow(numpy.ma.masked_invalid(values), cmap=cmap, vmin=-limit, vmax=limit, aspect="auto")
        axes.set_xticks(range(len(shown_tgt)))
        axes.set_xticklabels(
            [f"{label}\n(n={n})" for label, n in zip(shown_tgt, table.counts)], rotation=45, ha="right", fontsize=8
        )
        axes.set_yticks(range(len(rows)))
        axes.set_yticklabels(shown_ext, fontsize=8)
        axes.set_xlabel(f"target label ({table.positions} spans)")
        axes.set_ylabel("extension label")
        axes.set_title(
            title or f"Mean extension-label logit at {table.positions} target spans ({table.n_docs} docs)", fontsize=9
        )
        figure.colorbar(image, ax=axes, label="mean logit")
        save_figure(figure, path)
    return [table.extension_labels[i] for i in rows]
