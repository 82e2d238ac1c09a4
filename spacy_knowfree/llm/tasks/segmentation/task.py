"""Word segmentation (P_seg): a JSON list of words -> ``SEG:WORD`` spans.

The words are aligned to the sentence in order (:func:`align_in_order`), so
repeated words land on successive occurrences and invented words are dropped
(``not_found``). Replies without JSON but with explicit separators
(``我 / 爱 / 北京``) are read as well and counted as ``plain_text_reply``.
"""

import re
from collections import Counter
from typing import Any, Iterable, List, Optional

from spacy_llm.registry import registry
from spacy_llm.ty import ExamplesConfigType, ShardMapper

from ....constants import EXTENSION_SPANS_KEY, SEG_WORD_LABEL
from ..base import ExtensionTask, Placement, TaskSettings, read_best_block
from ..examples import SegmentationExample, read_examples
from ..placement import align_in_order, place_in_order

_WORD_KEYS = ("word", "text", "token", "w", "词", "词语")
_PLAIN_SEPARATORS = re.compile(r"\s*[/|｜]\s*|\s+")
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_ANSWER_PREFIX = re.compile(r"^\s*(?:输出|答案|分词结果|结果|output|answer)\s*[:：]\s*", re.I)


def read_word_items(items: Iterable[Any], stats: Counter) -> List[str]:
    """Turn parsed reply items into words, counting bad ones.

    Accepted: strings, numbers, ``{word: ...}`` objects and one level of
    nested lists (``[["我", "爱"], ["北京"]]``).

    items (Iterable[Any]): items from :func:`parse_json_items`.
    stats (Counter): incremented at ``bad_item`` and ``empty_text``.
    RETURNS (List[str]): the words (stripped), in reply order.
    """
    words: List[str] = []
    for item in items:
        if isinstance(item, dict):
            lowered = {str(k).strip().lower(): v for k, v in item.items()}
            value = next((lowered[k] for k in _WORD_KEYS if k in lowered), None)
            item = value if isinstance(value, (str, int, float)) and not isinstance(value, bool) else None
        if isinstance(item, list):
            words.extend(read_word_items(item, stats))
            continue
        if isinstance(item, bool) or not isinstance(item, (str, int, float)):
            stats["bad_item"] += 1
            continue
        word = str(item).strip()
        if word:
            words.append(word)
        else:
            stats["empty_text"] += 1
    return words


def read_plain_words(reply: str) -> List[str]:
    """Words of a reply without JSON, if its first line is Chinese with explicit separators."""
    for line in reply.splitlines():
        line = _ANSWER_PREFIX.sub("", line).strip()
        if line:
            pieces = [p for p in _PLAIN_SEPARATORS.split(line) if p]
            return pieces if len(pieces) >= 2 and _CJK.search(line) else []
    return []


class SegmentationTask(ExtensionTask):
    """spacy-llm task writing ``SEG:WORD`` spans for an LLM's word segmentation."""

    family = "SEG"
    #: ``spacy-knowfree.Segmentation.v1`` reads ``templates/segmentation.v1.<lang>.jinja``.
    task_name = "segmentation"
    example_type = SegmentationExample

    def __init__(self, settings: TaskSettings, read_plain_text: bool = True, label: str = SEG_WORD_LABEL):
        """See :func:`make_segmentation_task`."""
        super().__init__(settings)
        self._read_plain_text = read_plain_text
        self._label = label

    def _read_reply(self, text: str, reply: str, stats: Counter) -> List[Placement]:
        def placeable(found: List[str]) -> int:
            return sum(1 for r in align_in_order(text, found) if r)

        parsed, words = read_best_block(reply, read_word_items, placeable, stats, count_dropped=False)
        if not parsed.found_json and self._read_plain_text and isinstance(reply, str):
            words = read_plain_words(reply)
            if words:
                parsed.dropped.pop("no_json", None)
                stats["plain_text_reply"] += 1
        stats.update(parsed.dropped)
        return place_in_order(text, words, [self._label] * len(words), stats)


@registry.llm_tasks("spacy-knowfree.Segmentation.v1")
def make_segmentation_task(
    lang: str = "zh",
    template: Optional[str] = None,
    examples: ExamplesConfigType = None,
    read_plain_text: bool = True,
    spans_key: str = EXTENSION_SPANS_KEY,
    alignment_mode: str = "expand",
    shard_mapper: Optional[ShardMapper] = None,
) -> SegmentationTask:
    """Word segmentation (P_seg) as a spacy-llm task, writing ``SEG:WORD`` spans.

    read_plain_text (bool): also read replies without JSON whose first line
        separates words with spaces, "/" or "|".
    spans_key (str): doc.spans key to append spans to.
    lang, template, examples, alignment_mode, shard_mapper: as for every
        extension task (:class:`~spacy_knowfree.llm.tasks.base.TaskSettings`).
    RETURNS (SegmentationTask): the task.
    """
    settings = TaskSettings(
        lang, template, read_examples(examples, SegmentationExample), spans_key, alignment_mode, shard_mapper
    )
    return SegmentationTask(settings, read_plain_text)
