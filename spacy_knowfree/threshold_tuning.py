"""Choose the decoding threshold of a trained ``knowfree`` component on dev data.

The component keeps a span when the probability of its best target label
exceeds ``threshold`` (0.5 by default). Whether another threshold trades
precision for recall better depends on the model and the data; sweeping it on
the dev split and keeping the one with the best span F1 answers that. The logits are computed once; each threshold only re-runs the
decoder (flat or nested, as the component is configured).
"""

from dataclasses import asdict, dataclass
from typing import Any, Dict, Iterable, List, Optional, Sequence, Set, Tuple

from spacy.language import Language
from spacy.tokens import Doc

from .component import KnowFREE
from .decoding import DecodedSpan, candidate_spans, select_flat, select_nested
from .errors import Errors
from .pipeline_inputs import fresh_copies, run_upstream

SpanKey = Tuple[int, int, int, str]  # doc index, start token, end token, label


@dataclass
class ThresholdScore:
    """Span P/R/F (0..1) of the decoder at one threshold."""

    threshold: float
    p: float
    r: float
    f: float
    n_predicted: int


@dataclass
class ThresholdSweep:
    """Scores of every threshold tried, with the component's current one."""

    component: str
    spans_key: str
    current: float
    n_docs: int
    n_gold: int
    scores: List[ThresholdScore]

    @property
    def best(self) -> ThresholdScore:
        """The best F1; among equal F1 the threshold nearest the current one."""
        return max(self.scores, key=lambda s: (round(s.f, 6), -abs(s.threshold - self.current)))

    def at(self, threshold: float) -> Optional[ThresholdScore]:
        """The score at ``threshold``, if it was tried."""
        return next((s for s in self.scores if abs(s.threshold - threshold) < 1e-9), None)

    def to_dict(self) -> Dict[str, Any]:
        data = asdict(self)
        scores = data.pop("scores")
        return {**data, "best": asdict(self.best), "scores": scores}


def threshold_grid(low: float = 0.05, high: float = 0.95, step: float = 0.05) -> List[float]:
    """Thresholds from ``low`` to ``high`` (inclusive) in steps of ``step``."""
    if not (0.0 <= low <= high < 1.0) or step <= 0.0:
        raise ValueError(Errors.KF501.format(low=low, high=high, step=step))
    count = int(round((high - low) / step)) + 1
    return sorted({round(min(low + i * step, high), 6) for i in range(count)})


def sweep_thresholds(
    nlp: Language,
    docs: Sequence[Doc],
    component: KnowFREE,
    thresholds: Optional[Iterable[float]] = None,
    batch_size: int = 64,
) -> ThresholdSweep:
    """Span P/R/F of ``component`` on the gold ``docs`` at every threshold.

    nlp (Language): the pipeline holding ``component`` (components before it
        run first, e.g. a shared tok2vec or transformer).
    docs (Sequence[Doc]): gold docs with ``doc.spans[component.key]``.
    thresholds (Iterable[float]): probabilities in [0, 1); default
        :func:`threshold_grid`.
    RETURNS (ThresholdSweep): the scores in threshold order; the best is :attr:`ThresholdSweep.best`.
    """
    tried = sorted(set(thresholds)) if thresholds is not None else threshold_grid()
    if not tried or tried[0] < 0.0 or tried[-1] >= 1.0:
        raise ValueError(
            Errors.KF501.format(low=tried[0] if tried else None, high=tried[-1] if tried else None, step="-")
        )
    key = component.key
    gold: Set[SpanKey] = {
        (i, span.start, span.end, span.label_)
        for i, doc in enumerate(docs)
        if key in doc.spans
        for span in doc.spans[key]
    }
    if not gold:
        raise ValueError(Errors.KF500.format(n=len(docs), key=key, name=component.name))
    labels = component.labels
    nested = bool(component.cfg["nested"])
    candidates: List[Tuple[int, int, List[DecodedSpan]]] = []  # doc index, length, best first
    copies = fresh_copies(nlp, docs)
    for first in range(0, len(copies), batch_size):
        batch = run_upstream(nlp, component, copies[first : first + batch_size], batch_size)
        for offset, (doc, logits) in enumerate(zip(batch, component.predict(batch))):
            grid = component.model.ops.to_numpy(logits)[..., : len(labels)]
            candidates.append((first + offset, len(doc), candidate_spans(grid, tried[0])))
    width = int(component.cfg["max_span_width"])
    scores = []
    for threshold in tried:
        predicted: Set[SpanKey] = set()
        for i, length, spans in candidates:
            above = [span for span in spans if span.score > threshold]  # still best first
            kept = select_nested(above, length, width) if nested else select_flat(above, length)
            predicted.update((i, s.start, s.end, labels[s.label]) for s in kept)
        correct = len(predicted & gold)
        p = correct / len(predicted) if predicted else 0.0
        r = correct / len(gold)
        f = 2 * p * r / (p + r) if p + r else 0.0
        scores.append(ThresholdScore(threshold, p, r, f, len(predicted)))
    return ThresholdSweep(component.name, key, float(component.cfg["threshold"]), len(docs), len(gold), scores)
