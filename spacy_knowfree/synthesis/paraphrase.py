"""Context paraphrasing that keeps the entities (paraphrase augmentation excerpt).

For every input sentence with target entities, the LLM rewrites only the
context around the entities and is told to keep each entity string as it
is. Each paraphrase is then *verified*: every entity mention of the source
must occur in it (as often as in the source, at word boundaries for
space-delimited scripts); paraphrases that lost or altered an entity are
dropped (``entity_lost``). The kept ones get the source's labels at the
places where the entity strings now occur (longest strings first; nested
spans only where the source had nested spans). Also dropped: ``empty``,
``too_long``, ``off_language``, ``copy_of_source`` (the sentence came back
unchanged) and ``duplicate``.
"""

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from spacy.tokens import Doc
from spacy.util import minibatch
from tqdm import tqdm

from ..errors import Errors
from ..llm.parsing import parse_json_items
from ..llm.runner import LLMRunner
from ..llm.tasks.prompts import PromptRenderer
from .augmenter import AugmenterBase, read_template_override
from .filters import FilterSettings
from .mentions import CharSpan, doc_mentions, find_mentions
from .summary import Summary
from .text import answer_lines, language_ratio, normalize_for_compare, strip_answer, text_similarity


def read_variants(reply: str, n_variants: int = 1) -> List[str]:
    """The paraphrases in a reply: a JSON array of strings, else one per line.

    With ``n_variants == 1`` only the first line counts (models like to add
    an explanation after the sentence).
    """
    parsed = parse_json_items(reply, lambda items: float(sum(isinstance(i, str) for i in items)))
    strings = [strip_answer(i) for i in parsed.items if isinstance(i, str)]
    variants = [s for s in strings if s] if strings else answer_lines(reply)
    return variants[: max(1, n_variants)]


def place_mentions(
    text: str, mentions: Sequence[Tuple[str, str]], *, allow_nested: bool = False
) -> Tuple[List[CharSpan], List[str]]:
    """Find the source's entity mentions in a paraphrase.

    text (str): the paraphrase.
    mentions (Sequence[Tuple[str, str]]): (mention text, label) of the source, in order.
    allow_nested (bool): let a mention sit inside another (the source had nested spans).
    RETURNS (Tuple[List[CharSpan], List[str]]): the spans (start, end, label)
        and the mention strings found fewer times than in the source.
    """
    needed: Counter = Counter(m for m, _ in mentions)
    labels: Dict[str, List[str]] = defaultdict(list)
    for mention, label in mentions:
        labels[mention].append(label)
    taken = [False] * len(text)
    spans: List[CharSpan] = []
    missing: List[str] = []
    for mention in sorted(needed, key=len, reverse=True):
        found = [(s, e) for s, e in find_mentions(text, mention) if allow_nested or not any(taken[s:e])]
        if len(found) < needed[mention]:
            missing.append(mention)
            continue
        for i, (start, end) in enumerate(found):
            spans.append((start, end, labels[mention][min(i, len(labels[mention]) - 1)]))
            for j in range(start, end):
                taken[j] = True
    return sorted(spans), missing


@dataclass
class ParaphraseSettings:
    """Settings of :class:`ParaphraseAugmenter`.

    n_variants (int): paraphrases asked for per sentence (one prompt).
    include_empty (bool): also paraphrase sentences without target entities.
    copy_similarity (float): similarity to the source (difflib ratio, after
        normalization) at or above which a paraphrase counts as a copy.
    batch_size (int): sentences per LLM batch.
    limit (int): use only the first N input docs (0: all).
    filters (FilterSettings): language and length thresholds.
    """

    n_variants: int = 1
    include_empty: bool = False
    copy_similarity: float = 0.97
    batch_size: int = 16
    limit: int = 0
    filters: FilterSettings = field(default_factory=FilterSettings)

    def check(self) -> None:
        if self.n_variants < 1:
            raise ValueError(
                Errors.KF304.format(
                    arg="n_variants", where="paraphrasing", value=self.n_variants, hint="Use 1 or more."
                )
            )
        self.filters.check()


class ParaphraseAugmenter(AugmenterBase):
    """Entity-preserving context paraphrases -> flagged docs (an
    :class:`~spacy_knowfree.synthesis.augmenter.Augmenter`)."""

    def __init__(
        self,
        runner: LLMRunner,
        *,
        settings: Optional[ParaphraseSettings] = None,
        template: Optional[str] = None,
        **common: Any,
    ):
        """settings (Optional[ParaphraseSettings]): paraphrasing and filter settings.
        template (Optional[str]): Jinja template (default: the built-in one in
        ``lang``); ``common``: lang, spans_key, make_doc, set_ents as for
        :class:`~spacy_knowfree.synthesis.augmenter.AugmenterBase`."""
        super().__init__(runner, **common)
        self.settings = settings or ParaphraseSettings()
        self.settings.filters.lang = self.lang
        self.settings.check()
        self.renderer = PromptRenderer(template or read_template_override(None, "paraphrase", self.lang))

    def prompt(self, doc: Doc) -> str:
        """The paraphrase prompt of a source doc."""
        entities = list(dict.fromkeys(span.text for span in doc_mentions(doc, self.spans_key)))
        return self.renderer(text=doc.text, entities=entities, n_variants=self.settings.n_variants)

    def check(self, variant: str, source: Doc, seen: set) -> Tuple[Optional[str], List[CharSpan]]:
        """Why a paraphrase is dropped (or None) and its spans when kept."""
        filters = self.settings.filters
        if not variant.strip():
            return "empty", []
        if len(variant) > filters.max_output_chars or len(variant) > 4 * max(len(source.text), 50):
            return "too_long", []
        if language_ratio(variant, self.lang) < filters.min_lang_ratio:
            return "off_language", []
        norm, src = normalize_for_compare(variant), normalize_for_compare(source.text)
        if norm == src or text_similarity(norm, src) >= self.settings.copy_similarity:
            return "copy_of_source", []
        spans_in = doc_mentions(source, self.spans_key)
        mentions = [(span.text, span.label_) for span in spans_in]
        nested = any(a.end > b.start for a, b in zip(spans_in, spans_in[1:]))
        spans, missing = place_mentions(variant, mentions, allow_nested=nested)
        if missing:
            return "entity_lost", []
        if norm in seen:
            return "duplicate", []
        seen.add(norm)
        return None, spans

    def run(self, docs: Sequence[Doc], progress: bool = True) -> Tuple[List[Doc], Summary]:
        """Paraphrase every input sentence (with entities) and keep the verified ones.

        RETURNS (Tuple[List[Doc], Summary]): flagged docs with target spans, and the counts.
        """
        settings = self.settings
        summary = Summary(title="knowfree augment paraphrase")
        pool = list(docs)[: settings.limit] if settings.limit > 0 else list(docs)
        sources = [(i, d) for i, d in enumerate(pool) if settings.include_empty or doc_mentions(d, self.spans_key)]
        if len(sources) < len(pool):
            summary.add_extra("input docs without entities (skipped)", len(pool) - len(sources))
        seen = {normalize_for_compare(doc.text) for doc in pool}
        stats: Counter = Counter()
        out_docs: List[Doc] = []
        bar = tqdm(total=len(sources), desc="paraphrase", unit="doc", disable=not progress)
        for batch in minibatch(sources, settings.batch_size):
            replies = self.runner([self.prompt(doc) for _, doc in batch])
            for (index, doc), reply in zip(batch, replies):
                variants = read_variants(reply, settings.n_variants)
                if not variants:
                    summary.outputs += 1
                    summary.dropped["empty"] += 1
                    self.records.append({"source": index, "reply": reply, "status": "empty"})
                    continue
                for variant in variants:
                    summary.outputs += 1
                    reason, spans = self.check(variant, doc, seen)
                    record = {"source": index, "source_text": doc.text, "paraphrase": variant}
                    if reason is not None:
                        summary.dropped[reason] += 1
                        record["status"] = reason
                    else:
                        summary.kept += 1
                        out_docs.append(
                            self.synthetic_doc(variant, spans, stats, "paraphrase", source=index, source_text=doc.text)
                        )
                        record["status"] = "kept"
                    self.records.append(record)
            bar.update(len(batch))
        bar.close()
        self.count_docs(summary, out_docs, stats)
        return out_docs, summary
