"""Per-document counts of what the LLM tasks kept, dropped and repaired.

Every task adds its counts to ``doc.user_data[STATS_KEY][family]`` (families
``ENT``, ``SEG``, ``POS``), a plain ``{reason: count}`` dict that survives
``DocBin(store_user_data=True)``. :func:`summarize_stats` adds them up over a
corpus so a CLI can report, e.g., how many entity mentions were not found in
their sentence.

Counters (not all apply to every family):

* ``replies``, ``spans``: replies read, spans written;
* reply level: ``no_json``, ``truncated``, ``unreadable_item``,
  ``other_block_items``, ``plain_text_reply`` (segmentation read from a reply
  without JSON);
* item level: ``bad_item`` (not an object/pair/string of the expected shape),
  ``empty_text``, ``missing_type`` (no entity type or POS tag), ``unknown_type``, ``not_found`` (string not
  in the text), ``unalignable`` (no token boundaries fit), ``duplicate``;
* repairs, kept but worth knowing: ``normalized_match``, ``realigned``,
  ``filled`` (POS: words without a tag given ``fallback_tag``),
  ``no_segmentation`` (POS: no ``SEG:`` spans to read words from).
"""

from collections import Counter
from typing import Dict, Iterable, Mapping

from spacy.tokens import Doc

from ...constants import LLM_STATS_KEY

STATS_KEY = LLM_STATS_KEY

#: Counters that describe items which did not become spans.
DROP_REASONS = (
    "no_json",
    "truncated",
    "unreadable_item",
    "other_block_items",
    "bad_item",
    "empty_text",
    "missing_type",
    "unknown_type",
    "not_found",
    "unalignable",
    "duplicate",
)


def add_stats(doc: Doc, family: str, counts: Mapping[str, int]) -> None:
    """Add ``counts`` to the doc's statistics for ``family``."""
    all_stats = doc.user_data.setdefault(STATS_KEY, {})
    current = all_stats.setdefault(family, {})
    for reason, count in counts.items():
        if count:
            current[reason] = int(current.get(reason, 0)) + int(count)


def get_stats(doc: Doc) -> Dict[str, Dict[str, int]]:
    """The doc's statistics: ``{family: {reason: count}}`` (a copy)."""
    return {fam: dict(c) for fam, c in doc.user_data.get(STATS_KEY, {}).items()}


def summarize_stats(docs: Iterable[Doc]) -> Dict[str, Counter]:
    """Sum the statistics of many docs. RETURNS (Dict[str, Counter]): per family."""
    total: Dict[str, Counter] = {}
    for doc in docs:
        for family, counts in doc.user_data.get(STATS_KEY, {}).items():
            total.setdefault(family, Counter()).update(counts)
    return total


def format_stats(summary: Mapping[str, Mapping[str, int]]) -> str:
    """One line per family, e.g. ``ENT: 12 spans from 5 replies; dropped: not_found=3``."""
    lines = []
    for family in sorted(summary):
        counts = summary[family]
        dropped = [f"{r}={counts[r]}" for r in DROP_REASONS if counts.get(r)]
        other = [
            f"{r}={c}"
            for r, c in sorted(counts.items())
            if c and r not in DROP_REASONS and r not in ("spans", "replies")
        ]
        line = f"{family}: {counts.get('spans', 0)} spans from {counts.get('replies', 0)} replies"
        line += "; dropped: " + (", ".join(dropped) if dropped else "none")
        if other:
            line += "; " + ", ".join(other)
        lines.append(line)
    return "\n".join(lines)
