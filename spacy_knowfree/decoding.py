"""Decode a banded span grid of logits into labelled spans (section 3.2, inference).

Cell ``[i, k]`` of the grid is the span of tokens ``i .. i + k``. Each cell gets
its best target label (extension columns are never passed in), cells whose
probability exceeds the threshold become candidates, and candidates are kept
greedily by probability: ``nested=False`` keeps non-overlapping spans,
``nested=True`` keeps nested spans but never crossing ones.
"""

from typing import List, NamedTuple

import numpy


class DecodedSpan(NamedTuple):
    start: int  # first token
    end: int  # one past the last token
    label: int  # column of the target label
    score: float  # sigmoid probability


def sigmoid(x: numpy.ndarray) -> numpy.ndarray:
    """Numerically stable logistic function."""
    out = numpy.empty_like(x)
    positive = x >= 0
    out[positive] = 1.0 / (1.0 + numpy.exp(-x[positive]))
    exp_x = numpy.exp(x[~positive])
    out[~positive] = exp_x / (1.0 + exp_x)
    return out


def valid_cells(length: int, width: int) -> numpy.ndarray:
    """Boolean (length, width) mask: True where span ``i .. i + k`` ends inside the doc."""
    starts = numpy.arange(length).reshape(-1, 1)
    offsets = numpy.arange(width).reshape(1, -1)
    return (starts + offsets) < length


def candidate_spans(logits: numpy.ndarray, threshold: float) -> List[DecodedSpan]:
    """All valid cells whose best label has probability > threshold, best first.

    logits (numpy.ndarray): (length, width, n_labels) target-label logits.
    """
    length, width, n_labels = logits.shape
    if length == 0 or n_labels == 0:
        return []
    best = logits.argmax(axis=-1)
    best_logit = numpy.take_along_axis(logits, best[..., None], axis=-1)[..., 0]
    probs = sigmoid(best_logit.astype("float64"))
    keep = valid_cells(length, width) & (probs > threshold)
    starts, offsets = numpy.nonzero(keep)
    scores = probs[starts, offsets]
    # Highest probability first; ties: earlier start, then shorter span.
    order = numpy.lexsort((offsets, starts, -scores))
    return [
        DecodedSpan(int(starts[j]), int(starts[j] + offsets[j] + 1), int(best[starts[j], offsets[j]]), float(scores[j]))
        for j in order
    ]


def select_flat(candidates: List[DecodedSpan], length: int) -> List[DecodedSpan]:
    """Greedily keep the best candidates that overlap no kept span."""
    occupied = numpy.zeros(length, dtype=bool)
    kept = []
    for span in candidates:
        if not occupied[span.start : span.end].any():
            occupied[span.start : span.end] = True
            kept.append(span)
    return kept


def select_nested(candidates: List[DecodedSpan], length: int, width: int) -> List[DecodedSpan]:
    """Greedily keep the best candidates that cross no kept span (nesting is fine)."""
    ends_by_start: List[List[int]] = [[] for _ in range(length)]
    kept = []
    for span in candidates:
        s, e = span.start, span.end
        crossing = any(s < b < e for a in range(max(0, s - width + 1), s) for b in ends_by_start[a]) or any(
            b > e for a in range(s + 1, e) for b in ends_by_start[a]
        )
        if not crossing and e not in ends_by_start[s]:
            ends_by_start[s].append(e)
            kept.append(span)
    return kept


def decode_grid(logits: numpy.ndarray, threshold: float, nested: bool) -> List[DecodedSpan]:
    """Spans of one document, sorted by position."""
    length, width, _ = logits.shape
    candidates = candidate_spans(logits, threshold)
    if nested:
        kept = select_nested(candidates, length, width)
    else:
        kept = select_flat(candidates, length)
    return sorted(kept, key=lambda span: (span.start, -span.end, span.label))
