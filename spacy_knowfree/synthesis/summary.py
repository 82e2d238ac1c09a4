"""What a synthesis or augmentation run generated, kept and dropped: the
counts printed at the end, and the per-output log."""

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Tuple, Union

from wasabi import msg

from .filters import OUTPUT_REASONS, SENTENCE_REASONS

PathLike = Union[str, Path]


@dataclass
class Summary:
    """What a synthesis or augmentation run generated, kept and dropped.

    outputs: LLM outputs considered (explanations, sentences, paraphrases);
    kept: outputs of which something was kept;
    dropped: dropped outputs by reason;
    sentences / sentences_kept / sentence_dropped: the same per sentence
    (synthesis only); docs: synthetic docs written;
    llm: prompts asked, sent to the LLM ("made") and answered by the cache;
    extra: further counts (spans written, entity pool growth, ...).
    """

    title: str = "synthesis"
    outputs: int = 0
    kept: int = 0
    dropped: Counter = field(default_factory=Counter)
    sentences: int = 0
    sentences_kept: int = 0
    sentence_dropped: Counter = field(default_factory=Counter)
    docs: int = 0
    llm: Dict[str, int] = field(default_factory=lambda: {"prompts": 0, "made": 0, "cached": 0})
    extra: Dict[str, int] = field(default_factory=dict)

    def add_extra(self, name: str, count: int = 1) -> None:
        """Add ``count`` to the further count ``name``."""
        self.extra[name] = self.extra.get(name, 0) + int(count)

    def rows(self) -> List[Tuple[str, Any]]:
        """(name, count) rows, drop reasons in report order."""
        rows: List[Tuple[str, Any]] = [("generated (LLM outputs)", self.outputs), ("kept", self.kept)]
        reasons = [r for r in OUTPUT_REASONS if r in self.dropped]
        reasons += sorted(r for r in self.dropped if r not in OUTPUT_REASONS)
        rows += [(f"  dropped: {r}", self.dropped[r]) for r in reasons]
        if self.sentences:
            rows += [("sentences", self.sentences), ("sentences kept", self.sentences_kept)]
            reasons = [r for r in SENTENCE_REASONS if r in self.sentence_dropped]
            reasons += sorted(r for r in self.sentence_dropped if r not in SENTENCE_REASONS)
            rows += [(f"  sentences dropped: {r}", self.sentence_dropped[r]) for r in reasons]
        rows.append(("synthetic docs written", self.docs))
        rows += [(name, count) for name, count in self.extra.items()]
        rows += [
            ("LLM prompts", self.llm.get("prompts", 0)),
            ("  LLM calls made", self.llm.get("made", 0)),
            ("  answered from cache", self.llm.get("cached", 0)),
        ]
        return rows

    def to_dict(self) -> Dict[str, Any]:
        """The counts as JSON-serializable data (``--summary``)."""
        return {
            "outputs": self.outputs,
            "kept": self.kept,
            "dropped": dict(self.dropped),
            "sentences": self.sentences,
            "sentences_kept": self.sentences_kept,
            "sentence_dropped": dict(self.sentence_dropped),
            "docs": self.docs,
            "llm": dict(self.llm),
            "extra": dict(self.extra),
        }

    def print(self) -> None:
        """Print the counts as a table."""
        msg.table(self.rows(), header=(self.title, "count"), divider=True, aligns=("l", "r"), max_col=60)


def write_records(records: Iterable[Dict[str, Any]], path: PathLike) -> None:
    """Write per-output records (reply, fate, kept sentences) as JSONL."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf8") as file_:
        for record in records:
            file_.write(json.dumps(record, ensure_ascii=False) + "\n")
