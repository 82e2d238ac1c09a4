"""Placing strings an LLM returned onto the tokens of a ``Doc``.

Two ways, one per kind of answer:

* :func:`find_occurrences` for entity mentions: every occurrence of the
  string in the text, scanning left to right without overlaps, so a mention
  repeated in the sentence is labelled at each place it occurs. When the exact
  string is absent, a case- and width-insensitive match (NFKC, so ``ＡＢＣ``
  finds ``ABC`` and ``(`` finds ``（``) is tried; offsets always refer to the
  original text.
* :func:`align_in_order` for word lists (segmentation, POS): the words are
  aligned to the text as one ordered sequence (``difflib``), so the n-th
  ``的`` of the answer lands on the n-th ``的`` of the sentence, and words the
  model invented or altered are left unplaced instead of being pinned to a
  far-away match that would derail every later word.

Character offsets become spans with ``doc.char_span(start, end,
alignment_mode=...)``. The default is ``"expand"``: with spaCy's Chinese
character tokenizer every character is a token and all modes agree; when
tokens are coarser than the model's strings (an English word or an emoji
sequence in a ``zh`` doc, or jieba/pkuseg tokens), ``"expand"`` snaps the
mention to the tokens that contain it, keeping the information the KnowFREE
grid can represent, while ``"contract"`` returns nothing for a mention inside
one token and would silently lose it. Every span whose text differs from the
model's string is counted as ``realigned``, so the trade-off stays visible.
"""

import difflib
import unicodedata
from bisect import bisect_right
from collections import Counter
from typing import Iterable, List, Optional, Sequence, Set, Tuple

from spacy.tokens import Doc, Span

from ...errors import Errors

ALIGNMENT_MODES = ("strict", "contract", "expand")
CharRange = Tuple[int, int]


def check_alignment_mode(mode: str) -> str:
    """Validate an alignment mode. RETURNS (str): the mode."""
    if mode not in ALIGNMENT_MODES:
        raise ValueError(Errors.KF201.format(mode=mode, modes=", ".join(ALIGNMENT_MODES)))
    return mode


def _fold(text: str) -> str:
    """Case- and width-fold ``text`` one character at a time (length-preserving)."""
    out = []
    for ch in text:
        folded = unicodedata.normalize("NFKC", ch).casefold()
        out.append(folded if len(folded) == 1 else ch)
    return "".join(out)


def _scan(haystack: str, needle: str) -> List[CharRange]:
    found = []
    start = haystack.find(needle)
    while start != -1:
        found.append((start, start + len(needle)))
        start = haystack.find(needle, start + len(needle))
    return found


def find_occurrences(text: str, mention: str) -> Tuple[List[CharRange], bool]:
    """All non-overlapping occurrences of ``mention`` in ``text``, left to right.

    text (str): the document text.
    mention (str): the string to find (already stripped).
    RETURNS (Tuple[List[Tuple[int, int]], bool]): the character ranges and
        whether they were found only by the case/width-insensitive match.
    """
    if not mention:
        return [], False
    exact = _scan(text, mention)
    if exact:
        return exact, False
    return _scan(_fold(text), _fold(mention)), True


def align_in_order(text: str, words: Sequence[str]) -> List[Optional[CharRange]]:
    """Align an ordered word list to ``text``.

    Each word is placed where its characters match the text as part of one
    monotone alignment of all words with the text; a word is placed only if
    all its characters fall into one matching block.

    text (str): the document text.
    words (Sequence[str]): the words, in reading order (already stripped).
    RETURNS (List[Optional[Tuple[int, int]]]): one range per word, ``None``
        where the word could not be placed.
    """
    joined = "".join(words)
    if not joined or not text:
        return [None] * len(words)
    matcher = difflib.SequenceMatcher(None, text, joined, autojunk=False)
    blocks = [b for b in matcher.get_matching_blocks() if b.size]
    starts = [b.b for b in blocks]
    result: List[Optional[CharRange]] = []
    offset = 0
    for word in words:
        a, b = offset, offset + len(word)
        offset = b
        k = bisect_right(starts, a) - 1
        if not word or k < 0 or b > blocks[k].b + blocks[k].size:
            result.append(None)
            continue
        shift = blocks[k].a - blocks[k].b
        result.append((a + shift, b + shift))
    return result


def char_range_to_span(
    doc: Doc,
    start: int,
    end: int,
    label: str,
    alignment_mode: str,
    stats: Counter,
) -> Optional[Span]:
    """Make a labelled span from a character range, counting what happens.

    doc (Doc): the document.
    start (int): start character offset.
    end (int): end character offset.
    label (str): span label.
    alignment_mode (str): ``"strict"``, ``"contract"`` or ``"expand"``.
    stats (Counter): incremented at ``unalignable`` (no span) or ``realigned``
        (the span's text differs from ``doc.text[start:end]``).
    RETURNS (Optional[Span]): the span, or None.
    """
    span = doc.char_span(start, end, label=label, alignment_mode=alignment_mode)
    if span is None or len(span) == 0:
        stats["unalignable"] += 1
        return None
    if span.start_char != start or span.end_char != end:
        stats["realigned"] += 1
    return span


def dedupe_spans(spans: Iterable[Span], stats: Counter, seen: Optional[Set[Tuple[int, int, int]]] = None) -> List[Span]:
    """Drop spans whose boundaries and label were already seen (counted as ``duplicate``).

    spans (Iterable[Span]): candidate spans, in order.
    stats (Counter): incremented at ``duplicate``.
    seen (Optional[Set[Tuple[int, int, int]]]): (start, end, label id) of spans
        already present, e.g. in the span group being appended to; updated.
    RETURNS (List[Span]): the first span of each (start, end, label).
    """
    seen = set() if seen is None else seen
    kept = []
    for span in spans:
        key = (span.start, span.end, span.label)
        if key in seen:
            stats["duplicate"] += 1
            continue
        seen.add(key)
        kept.append(span)
    return kept


def non_overlapping(spans: Iterable[Span]) -> List[Span]:
    """The spans, in the given order, that start at or after the end of the
    last one kept (sort them first: by start, then end or -end)."""
    kept: List[Span] = []
    end = -1
    for span in spans:
        if span.start >= end:
            kept.append(span)
            end = span.end
    return kept


def place_in_order(
    text: str, words: Sequence[str], labels: Sequence[str], stats: Counter
) -> List[Tuple[int, int, str]]:
    """Align ``words`` to ``text`` in order (:func:`align_in_order`) and label them.

    text (str): the text the words come from.
    words (Sequence[str]): the words of a reply, in reply order.
    labels (Sequence[str]): the label of each word.
    stats (Counter): incremented at ``not_found`` for each word left unplaced.
    RETURNS (List[Tuple[int, int, str]]): (start char, end char, label) of the placed words.
    """
    placed: List[Tuple[int, int, str]] = []
    for label, rng in zip(labels, align_in_order(text, words)):
        if rng is None:
            stats["not_found"] += 1
        else:
            placed.append((rng[0], rng[1], label))
    return placed
