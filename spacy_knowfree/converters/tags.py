"""BIO / BIOES / BMES tag sequences <-> spans, chunked the way conlleval does.

conlleval rules: a chunk starts at ``B-``/``S-``, and also at an ``I-``
(``M-`` in BMES), or ``E-`` tag that follows ``O``, ``E-``, ``S-`` or a tag of
another type; a chunk ends before ``B-``/``S-``/``O``, after ``E-``/``S-``,
and where the type changes. Chunks that need such a start are reported as
``REPAIR_START`` repairs; in BIOES/BMES, chunks that end without ``E-``/``S-``
are reported as ``REPAIR_END`` repairs.
"""

from typing import Iterable, List, Optional, Sequence, Tuple

from ..errors import Errors
from .docs import SpanTuple, spans_overlap

SCHEMES = {"bio": ("B", "I"), "bioes": ("B", "I", "E", "S"), "bmes": ("B", "M", "E", "S")}
REPAIR_START = "chunk start"
REPAIR_END = "unclosed chunk"

# (index of the token where the repaired chunk starts, repair kind)
Repair = Tuple[int, str]


def split_tag(tag: str) -> Tuple[str, str]:
    """``"B-PER.NAM"`` -> ``("B", "PER.NAM")``; ``"O"`` -> ``("O", "")``.
    Anything else without a ``PREFIX-TYPE`` shape gives ``("", tag)``."""
    if tag == "O":
        return "O", ""
    prefix, sep, label = tag.partition("-")
    if not sep or not label or len(prefix) != 1:
        return "", tag
    return prefix, label


def detect_scheme(prefixes: Iterable[str]) -> Optional[str]:
    """The scheme of a set of tag prefixes: ``"bmes"`` if ``M`` occurs,
    ``"bioes"`` if ``E`` or ``S`` occurs, else ``"bio"``. ``None`` when
    ``I`` and ``M`` both occur (no scheme has both)."""
    found = set(prefixes) - {"O"}
    if "M" in found:
        return None if "I" in found else "bmes"
    if found & {"E", "S"}:
        return "bioes"
    return "bio"


def chunk_tags(pairs: Sequence[Tuple[str, str]], scheme: str) -> Tuple[List[SpanTuple], List[Repair]]:
    """Chunk already split and validated ``(prefix, label)`` pairs.

    RETURNS (Tuple[List[SpanTuple], List[Repair]]): the spans, and the repairs.
    """
    closing = scheme != "bio"
    spans: List[SpanTuple] = []
    repairs: List[Repair] = []
    start: Optional[int] = None
    prev_prefix, prev_label = "O", ""
    for i, (prefix, label) in enumerate(pairs):
        prefix = "I" if prefix == "M" else prefix
        if start is not None and _ends(prev_prefix, prefix, prev_label, label):
            spans.append((start, i, prev_label))
            if closing and prev_prefix in ("B", "I"):
                repairs.append((start, REPAIR_END))
            start = None
        if prefix != "O" and start is None:
            start = i
            if prefix in ("I", "E"):
                repairs.append((i, REPAIR_START))
        prev_prefix, prev_label = prefix, label
    if start is not None:
        spans.append((start, len(pairs), prev_label))
        if closing and prev_prefix in ("B", "I"):
            repairs.append((start, REPAIR_END))
    return spans, repairs


def _ends(prev: str, cur: str, prev_label: str, label: str) -> bool:
    """conlleval's endOfChunk for a chunk that is open (``prev`` is not O)."""
    return prev in ("E", "S") or cur in ("B", "S", "O") or prev_label != label


def tags_to_spans(
    tags: Sequence[str], scheme: str = "auto", *, where: str = "tags"
) -> Tuple[List[SpanTuple], List[Repair]]:
    """Chunk a tag sequence conlleval-style.

    tags (Sequence[str]): tags such as ``B-PER``, ``M-ORG``, ``O``.
    scheme (str): ``"bio"``, ``"bioes"``, ``"bmes"`` or ``"auto"``.
    where (str): where the tags come from, for error messages.
    RETURNS (Tuple[List[SpanTuple], List[Repair]]): spans ``(start, end,
        label)`` (end exclusive) and the repairs made.
    """
    pairs = [split_tag(tag) for tag in tags]
    if scheme == "auto":
        detected = detect_scheme(p for p, _ in pairs if p)
        if detected is None:
            raise ValueError(Errors.KF104.format(where=where, prefixes="I, M"))
        scheme = detected
    allowed = scheme_prefixes(scheme)
    for i, (prefix, _) in enumerate(pairs):
        if prefix not in allowed:
            raise ValueError(
                Errors.KF103.format(
                    where=f"{where}, token {i}", tag=tags[i], scheme=scheme, prefixes=", ".join(SCHEMES[scheme])
                )
            )
    return chunk_tags(pairs, scheme)


def scheme_prefixes(scheme: str) -> Tuple[str, ...]:
    """The tag prefixes of ``scheme`` plus ``"O"``; raises on unknown schemes."""
    if scheme not in SCHEMES:
        raise ValueError(Errors.KF105.format(what="tag scheme", value=scheme, options=", ".join(["auto", *SCHEMES])))
    return SCHEMES[scheme] + ("O",)


def spans_to_tags(length: int, spans: Iterable[SpanTuple], scheme: str = "bioes") -> List[str]:
    """Tags for non-overlapping spans over ``length`` tokens.

    scheme (str): ``"bio"``, ``"bioes"`` or ``"bmes"`` (in BMES, tokens
        outside spans are ``O`` too).
    RETURNS (List[str]): one tag per token.
    """
    spans = list(spans)
    scheme_prefixes(scheme)
    if spans_overlap(spans):
        raise ValueError(Errors.KF106.format(spans=sorted(spans)[:10]))
    inside = "M" if scheme == "bmes" else "I"
    tags = ["O"] * length
    for start, end, label in spans:
        if scheme != "bio" and end - start == 1:
            tags[start] = f"S-{label}"
            continue
        tags[start] = f"B-{label}"
        for i in range(start + 1, end):
            tags[i] = f"{inside}-{label}"
        if scheme != "bio":
            tags[end - 1] = f"E-{label}"
    return tags
