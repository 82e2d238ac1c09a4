"""Character n-gram features and BIOES tags of the linear-chain CRF peer.

Shared by the ``knowfree_crf`` component (:mod:`.crf_peer`) and the
benchmark's ``crf`` system (``benchmarks/crf.py``), so that both train the
same CRF. Features of token ``i`` (every token is one character in our
corpora; a longer token counts as one "character"), with ``<s>``/``</s>``
past the edges:

- ``bias``;
- ``T0``: its type, one of Han, digit, Latin, punct, other (:func:`char_type`);
- ``U-2`` … ``U+2``: the unigrams in a ±2 window;
- ``B-2`` … ``B+1``: the bigrams in a ±2 window (``B-2`` = c[i-2]c[i-1],
  ``B-1`` = c[i-1]c[i], ``B+0`` = c[i]c[i+1], ``B+1`` = c[i+1]c[i+2]);
- ``T``: the trigram centred on it, c[i-1]c[i]c[i+1].

A linear chain holds flat spans only: on nested data :func:`flat_spans`
keeps the outermost ones.
"""

import unicodedata
from typing import Iterable, List, Optional, Sequence, Set, Tuple

from spacy.tokens import Doc

#: What :func:`token_features` gives every token, in words.
FEATURES = "bias, character type, unigrams in a ±2 window, bigrams in a ±2 window, the centred trigram"
SpanTuple = Tuple[int, int, str]  # start, end (exclusive), label


def char_type(text: str) -> str:
    """``Han``, ``digit``, ``Latin``, ``punct`` or ``other`` (of the first character)."""
    if not text:
        return "other"
    ch = text[0]
    code = ord(ch)
    if 0x3400 <= code <= 0x4DBF or 0x4E00 <= code <= 0x9FFF or 0xF900 <= code <= 0xFAFF or 0x20000 <= code <= 0x2FFFF:
        return "Han"
    folded = unicodedata.normalize("NFKC", ch)  # full-width digits and letters
    if folded.isdigit():
        return "digit"
    if folded.isascii() and folded.isalpha():
        return "Latin"
    if unicodedata.category(ch)[0] in "PS":
        return "punct"
    return "other"


def token_features(chars: Sequence[str], i: int) -> List[str]:
    """The CRF features of position ``i`` of ``chars`` (see the module docstring)."""

    def at(j: int) -> str:
        if j < 0:
            return "<s>"
        if j >= len(chars):
            return "</s>"
        return chars[j]

    feats = ["bias", f"T0={char_type(chars[i])}"]
    feats += [f"U{offset:+d}={at(i + offset)}" for offset in range(-2, 3)]
    feats += [f"B{offset:+d}={at(i + offset)}{at(i + offset + 1)}" for offset in range(-2, 2)]
    feats.append(f"T={at(i - 1)}{at(i)}{at(i + 1)}")
    return feats


def doc_features(doc: Doc) -> List[List[str]]:
    """The features of every token of ``doc``."""
    chars = [token.text for token in doc]
    return [token_features(chars, i) for i in range(len(chars))]


def gold_spans(doc: Doc, spans_key: Optional[str]) -> List[SpanTuple]:
    """``(start, end, label)`` of the spans under ``doc.spans[spans_key]``, or
    of ``doc.ents`` when ``spans_key`` is None (a ``ner`` pipeline's gold)."""
    spans = doc.ents if spans_key is None else doc.spans.get(spans_key, [])
    return [(s.start, s.end, s.label_) for s in spans]


def flat_spans(spans: Iterable[SpanTuple]) -> Tuple[List[SpanTuple], int]:
    """The outermost non-overlapping spans (longest first, then leftmost), and
    how many overlapping spans were dropped."""
    kept: List[SpanTuple] = []
    taken: Set[int] = set()
    dropped = 0
    for start, end, label in sorted(set(spans), key=lambda s: (-(s[1] - s[0]), s[0], s[2])):
        if any(i in taken for i in range(start, end)):
            dropped += 1
            continue
        kept.append((start, end, label))
        taken.update(range(start, end))
    return sorted(kept), dropped


def spans_to_bioes(length: int, spans: Iterable[SpanTuple]) -> List[str]:
    """BIOES tags of flat ``spans`` over ``length`` tokens."""
    tags = ["O"] * length
    for start, end, label in spans:
        if end - start == 1:
            tags[start] = f"S-{label}"
        else:
            tags[start] = f"B-{label}"
            for i in range(start + 1, end - 1):
                tags[i] = f"I-{label}"
            tags[end - 1] = f"E-{label}"
    return tags


def bioes_to_spans(tags: Sequence[str]) -> List[SpanTuple]:
    """Spans of a BIOES sequence; an ill-formed chunk (B without E) is closed at
    the tag that breaks it, as a lenient chunker does."""
    spans: List[SpanTuple] = []
    start: Optional[int] = None
    label = ""
    for i, tag in enumerate(tags):
        prefix, _, tag_label = tag.partition("-")
        if start is not None and (prefix in ("B", "S", "O") or tag_label != label):
            spans.append((start, i, label))
            start = None
        if prefix == "S":
            spans.append((i, i + 1, tag_label))
        elif prefix == "B" or (prefix in ("I", "E") and start is None):
            start, label = i, tag_label
        if prefix == "E" and start is not None:
            spans.append((start, i + 1, label))
            start = None
    if start is not None:
        spans.append((start, len(tags), label))
    return spans
