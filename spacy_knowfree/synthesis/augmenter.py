"""What the peer augmenters share: the :class:`Augmenter` protocol that
``knowfree augment`` runs every augmenter through, and
:class:`AugmenterBase`, the state and bookkeeping they have in common."""

from collections import Counter
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Protocol, Sequence, Tuple, Union, runtime_checkable

import spacy
from spacy.tokens import Doc

from ..constants import TARGET_SPANS_KEY
from ..llm.runner import LLMRunner
from ..llm.tasks.prompts import read_template
from .annotation import flag_synthetic
from .mentions import CharSpan, make_span_doc
from .summary import Summary


@runtime_checkable
class Augmenter(Protocol):
    """A peer augmenter: training docs in; synthetic docs (flagged, with
    target spans) and the counts out; one record per LLM output kept in
    ``records`` for the ``--log``."""

    records: List[Dict[str, Any]]

    def run(self, docs: Sequence[Doc], progress: bool = True) -> Tuple[List[Doc], Summary]:
        """Augment ``docs``. RETURNS (Tuple[List[Doc], Summary]): the synthetic docs and the counts."""
        ...


def read_template_override(path: Optional[Union[str, Path]], name: str, lang: str) -> str:
    """The template in file ``path``, else the built-in ``name`` template in ``lang``."""
    if path:
        return Path(path).read_text(encoding="utf-8-sig")
    return read_template(name, lang)


class AugmenterBase:
    """The LLM, language, target key, tokenizer and records of an augmenter,
    and how it turns kept text into flagged docs and counts them."""

    def __init__(
        self,
        runner: LLMRunner,
        *,
        lang: str = "zh",
        spans_key: str = TARGET_SPANS_KEY,
        make_doc: Optional[Callable[[str], Doc]] = None,
        set_ents: bool = True,
    ):
        """runner (LLMRunner): the LLM.
        lang (str): language of the prompts, filters and default tokenizer.
        spans_key (str): ``doc.spans`` key of the target spans (else ``doc.ents``).
        make_doc (Optional[Callable[[str], Doc]]): tokenizer of the new docs
            (default: a blank pipeline of ``lang``).
        set_ents (bool): also set ``doc.ents`` from non-overlapping target spans.
        """
        self.runner = runner
        self.lang = lang
        self.spans_key = spans_key
        self.make_doc = make_doc or spacy.blank(lang).make_doc
        self.set_ents = set_ents
        self.records: List[Dict[str, Any]] = []

    def synthetic_doc(
        self, text: str, spans: Sequence[CharSpan], stats: Counter, method: str, **provenance: Any
    ) -> Doc:
        """A doc of ``text`` with target spans at character offsets, flagged synthetic."""
        doc = make_span_doc(self.make_doc, text, spans, self.spans_key, stats, set_ents=self.set_ents)
        return flag_synthetic(doc, method, **provenance)

    def count_docs(
        self, summary: Summary, docs: Sequence[Doc], stats: Counter, extra: Optional[Dict[str, int]] = None
    ) -> None:
        """Add the docs, their target spans, ``extra`` counts, unplaceable
        spans and the LLM calls to ``summary``."""
        summary.docs = len(docs)
        summary.add_extra("target spans", sum(len(doc.spans[self.spans_key]) for doc in docs))
        for name, count in (extra or {}).items():
            summary.add_extra(name, count)
        if stats["unalignable"]:
            summary.add_extra("spans not alignable to tokens", stats["unalignable"])
        summary.llm = dict(self.runner.counts)
