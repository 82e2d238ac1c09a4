"""Label merging on Docs and DocBins: reading the ``(entity, type)`` pairs of
the extension spans, applying a label map and merging POS spellings.

Both rewrites relabel ``doc.spans["knowfree_ext"]`` in place and drop the
identical spans the relabelling creates (:func:`relabel_span_group`); their
DocBin forms return a new DocBin with the same attrs and user-data setting.
"""

import warnings
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
from spacy.tokens import Doc, DocBin, Span, SpanGroup
from spacy.vocab import Vocab

from ...constants import ENT_PREFIX, EXTENSION_SPANS_KEY, POS_PREFIX
from ...errors import Warnings
from ...pos_tags import normalize_pos_tag
from .label_map import LabelMap, as_mapping


def _iter_docs(docs: Union[Doc, Iterable[Doc], DocBin], vocab: Optional[Vocab]) -> Iterable[Doc]:
    """The docs of a Doc, an iterable of Docs or a DocBin."""
    if isinstance(docs, Doc):
        return [docs]
    if isinstance(docs, DocBin):
        return docs.get_docs(vocab if vocab is not None else Vocab())
    return docs


def pairs_from_docs(
    docs: Union[Doc, Iterable[Doc], DocBin],
    *,
    spans_key: str = EXTENSION_SPANS_KEY,
    prefix: str = ENT_PREFIX,
    vocab: Optional[Vocab] = None,
    unique: bool = True,
) -> List[Tuple[str, str]]:
    """Collect ``(span text, type)`` from ``doc.spans[spans_key]`` spans whose
    label starts with ``prefix`` (the prefix is removed from the type)."""
    out: List[Tuple[str, str]] = []
    for doc in _iter_docs(docs, vocab):
        if spans_key not in doc.spans:
            continue
        for span in doc.spans[spans_key]:
            if span.label_.startswith(prefix):
                out.append((span.text, span.label_[len(prefix) :]))
    return list(dict.fromkeys(out)) if unique else out


def type_inventory(pairs: Sequence[Tuple[str, str]]) -> Counter:
    """Count pairs per type (the input ``T`` of ``P_merge``)."""
    return Counter(t for _, t in pairs)


def relabel_span_group(
    doc: Doc, relabel: Callable[[str], str], *, spans_key: str = EXTENSION_SPANS_KEY
) -> Tuple[int, int]:
    """Relabel ``doc.spans[spans_key]`` in place and drop identical spans
    (same start, end and label) the relabelling creates; the first is kept.
    Aligned ``attrs["scores"]`` follow the kept spans.

    RETURNS (Tuple[int, int]): ``(spans relabelled, duplicates removed)``.
    """
    if spans_key not in doc.spans:
        return 0, 0
    group = doc.spans[spans_key]
    scores = group.attrs.get("scores")
    aligned = scores is not None and hasattr(scores, "__len__") and len(scores) == len(group)
    seen = set()
    kept: List[Span] = []
    kept_idx: List[int] = []
    changed = removed = 0
    for i, span in enumerate(group):
        new_label = relabel(span.label_)
        if new_label != span.label_:
            changed += 1
            span = Span(doc, span.start, span.end, label=new_label, kb_id=span.kb_id, span_id=span.id)
        key = (span.start, span.end, span.label_)
        if key in seen:
            removed += 1
            continue
        seen.add(key)
        kept.append(span)
        kept_idx.append(i)
    if changed or removed:
        attrs = dict(group.attrs)
        if aligned and removed:
            attrs["scores"] = scores[kept_idx] if isinstance(scores, np.ndarray) else [scores[i] for i in kept_idx]
        doc.spans[spans_key] = SpanGroup(doc, name=spans_key, attrs=attrs, spans=kept)
    return changed, removed


def _relabel_docs(docs: Union[Doc, Iterable[Doc]], relabel: Callable[[str], str], spans_key: str) -> Dict[str, Any]:
    """:func:`relabel_span_group` on each doc. RETURNS (Dict[str, Any]):
    ``docs``, ``relabelled`` and ``duplicates_removed``."""
    stats: Dict[str, Any] = {"docs": 0, "relabelled": 0, "duplicates_removed": 0}
    for doc in _iter_docs(docs, None):
        changed, removed = relabel_span_group(doc, relabel, spans_key=spans_key)
        stats["docs"] += 1
        stats["relabelled"] += changed
        stats["duplicates_removed"] += removed
    return stats


def apply_label_map(
    docs: Union[Doc, Iterable[Doc]],
    label_map: Union[LabelMap, Mapping[str, str], str, Path],
    *,
    spans_key: str = EXTENSION_SPANS_KEY,
    prefix: str = ENT_PREFIX,
) -> Dict[str, Any]:
    """Rewrite ``ENT:<type>`` to ``ENT:<standard>`` in place, de-duplicating.

    docs: A Doc or Docs (modified in place).
    label_map: A :class:`LabelMap`, its JSON path, its dict, or a plain
        ``{type: standard}`` dict.
    spans_key (str): The span group.
    prefix (str): Only labels with this prefix are mapped.
    RETURNS (Dict[str, Any]): ``docs``, ``relabelled``, ``duplicates_removed``
        and ``unmapped`` (type -> count of ``prefix`` spans not in the map).
    """
    mapping = as_mapping(label_map)
    unmapped: Counter = Counter()

    def relabel(label: str) -> str:
        if not label.startswith(prefix):
            return label
        t = label[len(prefix) :]
        if t in mapping:
            return prefix + mapping[t]
        unmapped[t] += 1
        return label

    stats = _relabel_docs(docs, relabel, spans_key)
    stats["unmapped"] = dict(unmapped)
    return stats


def _rebuild_docbin(
    docbin: DocBin, vocab: Optional[Vocab], fn: Callable[[Iterable[Doc]], Dict[str, Any]]
) -> Tuple[DocBin, Dict[str, Any]]:
    vocab = vocab if vocab is not None else Vocab()
    docs = list(docbin.get_docs(vocab))
    stats = fn(docs)
    out = DocBin(attrs=docbin.attrs, store_user_data=docbin.store_user_data, docs=docs)
    return out, stats


def apply_label_map_to_docbin(
    docbin: DocBin,
    label_map: Union[LabelMap, Mapping[str, str], str, Path],
    *,
    vocab: Optional[Vocab] = None,
    spans_key: str = EXTENSION_SPANS_KEY,
    prefix: str = ENT_PREFIX,
) -> Tuple[DocBin, Dict[str, Any]]:
    """:func:`apply_label_map` on the docs of a DocBin.

    RETURNS (Tuple[DocBin, Dict[str, Any]]): A new DocBin (same attrs and
        user-data setting) and the statistics.
    """
    return _rebuild_docbin(
        docbin,
        vocab,
        lambda docs: apply_label_map(docs, label_map, spans_key=spans_key, prefix=prefix),
    )


def map_pos_spellings(tags: Iterable[str]) -> Tuple[Dict[str, str], List[str]]:
    """Map a POS tag inventory onto UPOS.

    RETURNS (Tuple[Dict[str, str], List[str]]): recognised spelling -> UPOS,
        and the unknown spellings (left unchanged by the merge).
    """
    known: Dict[str, str] = {}
    unknown: List[str] = []
    for t in dict.fromkeys(tags):
        upos = normalize_pos_tag(t)
        if upos is None:
            unknown.append(t)
        else:
            known[t] = upos
    return known, unknown


def merge_pos_spellings(
    docs: Union[Doc, Iterable[Doc]],
    *,
    spans_key: str = EXTENSION_SPANS_KEY,
    prefix: str = POS_PREFIX,
    warn: bool = True,
) -> Dict[str, Any]:
    """Rewrite ``POS:<spelling>`` to ``POS:<UPOS>`` in place, de-duplicating.

    Unknown spellings are kept unchanged, counted and reported (and warned
    about when ``warn``).

    RETURNS (Dict[str, Any]): ``docs``, ``relabelled``, ``duplicates_removed``,
        ``recognised`` (spelling -> {"upos": tag, "count": n}) and ``unknown``
        (spelling -> count).
    """
    cache: Dict[str, Optional[str]] = {}
    recognised: Counter = Counter()
    unknown: Counter = Counter()

    def relabel(label: str) -> str:
        if not label.startswith(prefix):
            return label
        t = label[len(prefix) :]
        if t not in cache:
            cache[t] = normalize_pos_tag(t)
        upos = cache[t]
        if upos is None:
            unknown[t] += 1
            return label
        recognised[t] += 1
        return prefix + upos

    stats = _relabel_docs(docs, relabel, spans_key)
    stats["recognised"] = {t: {"upos": cache[t], "count": n} for t, n in recognised.items()}
    stats["unknown"] = dict(unknown)
    if warn and unknown:
        shown = ", ".join(f"{t!r} ({n})" for t, n in unknown.most_common(10))
        warnings.warn(Warnings.KW250.format(count=sum(unknown.values()), n=len(unknown), tags=shown), stacklevel=2)
    return stats


def merge_pos_spellings_in_docbin(
    docbin: DocBin,
    *,
    vocab: Optional[Vocab] = None,
    spans_key: str = EXTENSION_SPANS_KEY,
    prefix: str = POS_PREFIX,
    warn: bool = True,
) -> Tuple[DocBin, Dict[str, Any]]:
    """:func:`merge_pos_spellings` on the docs of a DocBin.

    RETURNS (Tuple[DocBin, Dict[str, Any]]): A new DocBin and the report.
    """
    return _rebuild_docbin(
        docbin,
        vocab,
        lambda docs: merge_pos_spellings(docs, spans_key=spans_key, prefix=prefix, warn=warn),
    )
