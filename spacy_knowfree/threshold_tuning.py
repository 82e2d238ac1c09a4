"""Choose the decoding threshold of a trained ``knowfree`` component on dev data.

The component keeps a span when the probability of its best target label
exceeds ``threshold`` (0.5 by default). Whether another threshold trades
precision for recall better depends on the model and the data; sweeping it on
the dev split and keeping the one with the best span F1 answers that. The
logits are computed once; each threshold only re-runs the decoder (flat or
nested, as the component is configured).

The best threshold on dev is chosen on dev, so its dev F1 flatters it. The
held-out check says what the choice is worth on docs it did not see: the dev
docs are split in random halves, a threshold is chosen on one half and scored
on the other, against the current threshold on that same half.
"""

import random
import statistics
from dataclasses import asdict, dataclass
from typing import Any, Dict, Iterable, List, Optional, Sequence, Set, Tuple

import numpy
from spacy.language import Language
from spacy.tokens import Doc

from .component import KnowFREE
from .decoding import candidate_spans, select_flat, select_nested
from .errors import Errors
from .pipeline_inputs import fresh_copies, run_upstream

SpanKey = Tuple[int, int, str]  # start token, end token, label


@dataclass
class ThresholdScore:
    """Span P/R/F (0..1) of the decoder at one threshold."""

    threshold: float
    p: float
    r: float
    f: float
    n_predicted: int


@dataclass
class HeldOutCheck:
    """A threshold chosen on a random half of the dev docs, scored on the other half.

    splits: random halvings (each half tunes once and is scored once);
    gain: mean F1 (0..1) on the scored halves, chosen threshold minus the current one;
    gain_sd: its standard deviation over the ``2 * splits`` scored halves;
    mean_threshold: mean of the thresholds the tuning halves chose.
    """

    splits: int
    gain: float
    gain_sd: float
    mean_threshold: float


@dataclass
class ThresholdSweep:
    """Scores of every threshold tried, with the component's current one."""

    component: str
    spans_key: str
    current: float
    n_docs: int
    n_gold: int
    scores: List[ThresholdScore]
    held_out: Optional[HeldOutCheck] = None

    @property
    def best(self) -> ThresholdScore:
        """The best F1; among equal F1 the threshold nearest the current one."""
        return _best(self.scores, self.current)

    def at(self, threshold: float) -> Optional[ThresholdScore]:
        """The score at ``threshold``, if it was tried."""
        return next((s for s in self.scores if abs(s.threshold - threshold) < 1e-9), None)

    def to_dict(self) -> Dict[str, Any]:
        data = asdict(self)
        scores = data.pop("scores")
        return {**data, "best": asdict(self.best), "scores": scores}


def _best(scores: Sequence[ThresholdScore], current: float) -> ThresholdScore:
    return max(scores, key=lambda s: (round(s.f, 6), -abs(s.threshold - current)))


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
    held_out_splits: int = 0,
    seed: int = 0,
) -> ThresholdSweep:
    """Span P/R/F of ``component`` on the gold ``docs`` at every threshold.

    nlp (Language): the pipeline holding ``component`` (components before it
        run first, e.g. a shared tok2vec or transformer).
    docs (Sequence[Doc]): gold docs with ``doc.spans[component.key]``.
    thresholds (Iterable[float]): probabilities in [0, 1); default
        :func:`threshold_grid`.
    batch_size (int): docs per prediction batch.
    held_out_splits (int): random halvings of ``docs`` for the held-out check
        (:class:`HeldOutCheck`); 0 skips it, as do fewer than 2 docs.
    seed (int): seed of the halvings.
    RETURNS (ThresholdSweep): the scores in threshold order; the best is :attr:`ThresholdSweep.best`.
    """
    tried = sorted(set(thresholds)) if thresholds is not None else threshold_grid()
    if not tried or tried[0] < 0.0 or tried[-1] >= 1.0:
        raise ValueError(
            Errors.KF501.format(low=tried[0] if tried else None, high=tried[-1] if tried else None, step="-")
        )
    current = float(component.cfg["threshold"])
    # the current threshold is always decoded: the held-out check compares with it
    counts = _DocCounts.of(nlp, docs, component, sorted(set(tried) | {current}), batch_size)
    everything = numpy.ones(len(docs), dtype=bool)
    sweep = ThresholdSweep(
        component.name,
        component.key,
        current,
        len(docs),
        int(counts.gold.sum()),
        [score for score in counts.scores(everything) if score.threshold in tried],
    )
    if held_out_splits > 0 and len(docs) >= 2:
        sweep.held_out = counts.held_out(tried, current, held_out_splits, seed)
    return sweep


@dataclass
class _DocCounts:
    """Per threshold and doc: spans predicted and correct; per doc: gold spans."""

    thresholds: List[float]
    predicted: numpy.ndarray  # (thresholds, docs)
    correct: numpy.ndarray  # (thresholds, docs)
    gold: numpy.ndarray  # (docs,)

    @classmethod
    def of(
        cls, nlp: Language, docs: Sequence[Doc], component: KnowFREE, thresholds: List[float], batch_size: int
    ) -> "_DocCounts":
        """Decode every doc at every one of ``thresholds`` (ascending) from one prediction."""
        key = component.key
        gold: List[Set[SpanKey]] = [
            {(span.start, span.end, span.label_) for span in doc.spans[key]} if key in doc.spans else set()
            for doc in docs
        ]
        if not any(gold):
            raise ValueError(Errors.KF500.format(n=len(docs), key=key, name=component.name))
        labels = component.labels
        nested = bool(component.cfg["nested"])
        width = int(component.cfg["max_span_width"])
        predicted = numpy.zeros((len(thresholds), len(docs)), dtype=numpy.int64)
        correct = numpy.zeros_like(predicted)
        copies = fresh_copies(nlp, docs)
        for first in range(0, len(copies), batch_size):
            batch = run_upstream(nlp, component, copies[first : first + batch_size], batch_size)
            for offset, (doc, logits) in enumerate(zip(batch, component.predict(batch))):
                i = first + offset
                grid = component.model.ops.to_numpy(logits)[..., : len(labels)]
                spans = candidate_spans(grid, thresholds[0])  # best first
                for j, threshold in enumerate(thresholds):
                    above = [span for span in spans if span.score > threshold]
                    kept = select_nested(above, len(doc), width) if nested else select_flat(above, len(doc))
                    found = {(s.start, s.end, labels[s.label]) for s in kept}
                    predicted[j, i] = len(found)
                    correct[j, i] = len(found & gold[i])
        return cls(thresholds, predicted, correct, numpy.asarray([len(g) for g in gold], dtype=numpy.int64))

    def scores(self, docs: numpy.ndarray) -> List[ThresholdScore]:
        """P/R/F at every threshold over the docs where ``docs`` (a mask) is True."""
        n_gold = int(self.gold[docs].sum())
        result = []
        for j, threshold in enumerate(self.thresholds):
            n_predicted = int(self.predicted[j, docs].sum())
            n_correct = int(self.correct[j, docs].sum())
            p = n_correct / n_predicted if n_predicted else 0.0
            r = n_correct / n_gold if n_gold else 0.0
            f = 2 * p * r / (p + r) if p + r else 0.0
            result.append(ThresholdScore(threshold, p, r, f, n_predicted))
        return result

    def held_out(self, tried: List[float], current: float, splits: int, seed: int) -> HeldOutCheck:
        """Choose among ``tried`` on one random half, score on the other
        against ``current``, both ways, ``splits`` times."""
        rng = random.Random(seed)
        n = len(self.gold)
        gains: List[float] = []
        chosen: List[float] = []
        for _ in range(splits):
            order = list(range(n))
            rng.shuffle(order)
            half = numpy.zeros(n, dtype=bool)
            half[order[: n // 2]] = True
            for tune in (half, ~half):
                pick = _best([s for s in self.scores(tune) if s.threshold in tried], current).threshold
                scored = {s.threshold: s.f for s in self.scores(~tune)}
                gains.append(scored[pick] - scored[current])
                chosen.append(pick)
        return HeldOutCheck(splits, statistics.mean(gains), statistics.pstdev(gains), statistics.mean(chosen))
