"""The registered scorer ``spacy-knowfree.knowfree_scorer.v1``."""

from typing import Any, Callable, Dict, Iterable

from spacy.scorer import Scorer
from spacy.training import Example
from spacy.util import registry


def score_knowfree_spans(examples: Iterable[Example], **kwargs: Any) -> Dict[str, Any]:
    """P/R/F overall and per label of ``doc.spans[spans_key]``.

    Scores are reported as ``spans_{spans_key}_p/_r/_f`` and
    ``spans_{spans_key}_per_type``, so they follow the configured key.
    """
    key = kwargs["spans_key"]
    attr = f"spans_{key}"
    return Scorer.score_spans(
        examples,
        attr=attr,
        getter=lambda doc, _attr: doc.spans.get(key, []),
        has_annotation=lambda doc: key in doc.spans,
        allow_overlap=kwargs.get("allow_overlap", True),
        labeled=kwargs.get("labeled", True),
    )


@registry.scorers("spacy-knowfree.knowfree_scorer.v1")
def make_knowfree_scorer() -> Callable[..., Dict[str, Any]]:
    return score_knowfree_spans


def score_weights_for(spans_key: str) -> Dict[str, float]:
    """The default score weights for a component writing to ``spans_key``."""
    return {f"spans_{spans_key}_f": 1.0, f"spans_{spans_key}_p": 0.0, f"spans_{spans_key}_r": 0.0}
