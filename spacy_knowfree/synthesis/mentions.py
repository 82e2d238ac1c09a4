"""Entity mentions in the augmenters' text: finding an entity string again,
the target spans of a source doc, and docs built from character spans."""

from collections import Counter
from typing import Callable, List, Sequence, Tuple

from spacy.tokens import Doc, Span

from ..constants import CJK_CHAR_RE
from .annotation import set_target_spans

#: A span by characters: (start, end, label).
CharSpan = Tuple[int, int, str]


def _is_word_char(ch: str) -> bool:
    return ch.isalnum() and not CJK_CHAR_RE.match(ch)


def find_mentions(text: str, mention: str) -> List[Tuple[int, int]]:
    """Non-overlapping exact occurrences of ``mention`` in ``text``.

    Where the mention starts or ends with a letter or digit of a
    space-delimited script, the neighbouring character must not be one (so
    "Paris" is not found in "Parisian"); Chinese characters need no boundary.
    """
    if not mention:
        return []
    found = []
    start = text.find(mention)
    while start != -1:
        end = start + len(mention)
        left_ok = not (_is_word_char(mention[0]) and start > 0 and _is_word_char(text[start - 1]))
        right_ok = not (_is_word_char(mention[-1]) and end < len(text) and _is_word_char(text[end]))
        if left_ok and right_ok:
            found.append((start, end))
            start = text.find(mention, end)
        else:
            start = text.find(mention, start + 1)
    return found


def doc_mentions(doc: Doc, spans_key: str) -> List[Span]:
    """The target spans of a doc (``doc.spans[spans_key]``, else ``doc.ents``), in text order."""
    spans = list(doc.spans[spans_key]) if spans_key in doc.spans else list(doc.ents)
    return sorted(spans, key=lambda s: (s.start, -s.end))


def make_span_doc(
    make_doc: Callable[[str], Doc],
    text: str,
    spans: Sequence[CharSpan],
    spans_key: str,
    stats: Counter,
    *,
    set_ents: bool = True,
) -> Doc:
    """A doc for ``text`` with target spans from character offsets.

    Offsets are snapped to tokens (``alignment_mode="expand"``); spans that
    cannot be placed are counted in ``stats["unalignable"]``.
    """
    doc = make_doc(text)
    placed = []
    seen = set()
    for start, end, label in spans:
        span = doc.char_span(start, end, label=label, alignment_mode="expand")
        if span is None or len(span) == 0:
            stats["unalignable"] += 1
            continue
        if (span.start, span.end, label) in seen:
            continue
        seen.add((span.start, span.end, label))
        placed.append(span)
    set_target_spans(doc, spans_key, placed, set_ents=set_ents)
    return doc
