"""POS tagging (P_pos) over a given segmentation -> ``POS:<TAG>`` spans.

The prompt lists the words of the doc's ``SEG:WORD`` spans (written earlier,
e.g. by the segmentation task or the offline lexicon) and asks for one tag per
word. The paper notes that LLM POS answers miss words; here every word gets a
tag: words (or parts of words) the reply leaves untagged are filled with
``fallback_tag`` and counted as ``filled``. Without ``SEG:`` spans the model
segments by itself, the doc's tokens serve as words for filling, and the doc
is counted as ``no_segmentation``. Tags are kept as the model wrote them
(``NN``, ``n``, ``名词``): merging spellings is the job of label merging.
"""

import json
import re
from collections import Counter
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from spacy.tokens import Doc, Span
from spacy_llm.registry import registry
from spacy_llm.ty import ExamplesConfigType, ShardMapper

from ....constants import CJK_RANGES, EXTENSION_SPANS_KEY, SEG_WORD_LABEL
from ....pos_tags import UPOS_TAGS
from ..base import ExtensionTask, Placement, TaskSettings, read_best_block
from ..examples import POSExample, read_examples
from ..placement import align_in_order, non_overlapping, place_in_order

_WORD_KEYS = ("word", "text", "token", "w", "词", "词语")
_TAG_KEYS = ("pos", "tag", "pos_tag", "upos", "xpos", "label", "type", "词性", "标签")
_CONTAINER_KEYS = ("words", "tokens", "items", "result", "results", "data", "output", "pos_tags", "结果")
_INLINE_RE = re.compile(f"^(.+?)\\s*[/_]\\s*([A-Za-z{CJK_RANGES}]{{1,12}})$")


def _clean(value: Any) -> Optional[str]:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        value = str(value)
    if not isinstance(value, str):
        return None
    return " ".join(value.split())


def read_pos_items(items: Iterable[Any], stats: Counter) -> List[Tuple[str, str]]:
    """Turn parsed reply items into (word, tag) pairs, counting bad ones.

    Accepted: ``{word, pos}`` (and synonyms), ``[word, tag]``, ``"word/tag"``,
    ``{word: tag}`` and wrappers such as ``{"words": [...]}``.

    items (Iterable[Any]): items from :func:`parse_json_items`.
    stats (Counter): incremented at ``bad_item``, ``empty_text``, ``missing_type``.
    RETURNS (List[Tuple[str, str]]): the pairs, in reply order.
    """
    pairs: List[Tuple[str, str]] = []

    def add(word: Any, tag: Any) -> None:
        w, t = _clean(word), _clean(tag)
        if w is None:
            stats["bad_item"] += 1
        elif not w:
            stats["empty_text"] += 1
        elif not t:
            stats["missing_type"] += 1
        else:
            pairs.append((w, t))

    for item in items:
        if isinstance(item, dict):
            lowered = {str(k).strip().lower(): v for k, v in item.items()}
            word_key = next((k for k in _WORD_KEYS if k in lowered), None)
            tag_key = next((k for k in _TAG_KEYS if k in lowered), None)
            if word_key is not None:
                add(lowered[word_key], lowered[tag_key] if tag_key else None)
            elif tag_key is not None or not item:
                stats["empty_text" if tag_key else "bad_item"] += 1
            else:
                for key, value in item.items():
                    if isinstance(value, list) and str(key).strip().lower() in _CONTAINER_KEYS:
                        pairs.extend(read_pos_items(value, stats))
                    elif isinstance(value, str):
                        add(key, value)
                    else:
                        stats["bad_item"] += 1
        elif isinstance(item, list):
            if len(item) == 2 and not any(isinstance(v, (list, dict)) for v in item):
                add(item[0], item[1])
            elif item and all(isinstance(v, (list, dict)) for v in item):
                pairs.extend(read_pos_items(item, stats))
            else:
                stats["bad_item"] += 1
        elif isinstance(item, str):
            match = _INLINE_RE.match(item.strip())
            if match:
                add(match.group(1), match.group(2))
            else:
                stats["missing_type" if item.strip() else "empty_text"] += 1
        else:
            stats["bad_item"] += 1
    return pairs


class POSTaggingTask(ExtensionTask):
    """spacy-llm task writing ``POS:<TAG>`` spans over the doc's segmentation."""

    family = "POS"
    #: ``spacy-knowfree.POSTagging.v1`` reads ``templates/pos.v1.<lang>.jinja``.
    task_name = "pos"
    example_type = POSExample

    def __init__(
        self,
        settings: TaskSettings,
        tags: Sequence[str] = UPOS_TAGS,
        seg_label: str = SEG_WORD_LABEL,
        fallback_tag: str = "X",
    ):
        """See :func:`make_pos_task`."""
        super().__init__(settings)
        self._tags = list(tags)
        self._seg_label = seg_label
        self._fallback_label = f"POS:{fallback_tag}"

    def segmentation(self, doc: Doc) -> List[Span]:
        """The doc's words: its ``seg_label`` spans, left to right, without overlaps."""
        if self._spans_key not in doc.spans:
            return []
        return non_overlapping(
            sorted(
                (s for s in doc.spans[self._spans_key] if s.label_ == self._seg_label),
                key=lambda s: (s.start, -s.end),
            )
        )

    def _prompt_data(self, doc: Doc, shard: Doc, char_offset: int) -> Dict[str, Any]:
        words = None
        seg = self.segmentation(doc)
        if seg:
            stop = char_offset + len(shard.text)
            words = [s.text for s in seg if s.start_char >= char_offset and s.end_char <= stop]
        return {
            "tags": self._tags,
            "words": words,
            "words_json": json.dumps(words, ensure_ascii=False) if words is not None else None,
        }

    def _read_reply(self, text: str, reply: str, stats: Counter) -> List[Placement]:
        def placeable(found: List[Tuple[str, str]]) -> int:
            return sum(1 for r in align_in_order(text, [w for w, _ in found]) if r)

        _, pairs = read_best_block(reply, read_pos_items, placeable, stats)
        return place_in_order(text, [w for w, _ in pairs], [f"POS:{tag}" for _, tag in pairs], stats)

    def _fill_units(self, doc: Doc, stats: Counter) -> List[Span]:
        """Words to fill: the segmentation, plus tokens outside every word."""
        seg = self.segmentation(doc)
        if not seg:
            stats["no_segmentation"] += 1
        in_word = [False] * len(doc)
        for span in seg:
            for i in range(span.start, span.end):
                in_word[i] = True
        units = list(seg) + [doc[i : i + 1] for i in range(len(doc)) if not in_word[i]]
        return sorted(units, key=lambda s: s.start)

    def _finalize(self, doc: Doc, spans: List[Span], stats: Counter) -> List[Span]:
        text = doc.text
        covered = bytearray(len(text))
        for span in spans:
            covered[span.start_char : span.end_char] = b"\x01" * (span.end_char - span.start_char)
        filled: List[Span] = []
        for unit in self._fill_units(doc, stats):
            todo = [i for i in range(unit.start_char, unit.end_char) if not text[i].isspace() and not covered[i]]
            if not todo:
                continue
            if len(todo) == sum(1 for ch in unit.text if not ch.isspace()):
                filled.append(Span(doc, unit.start, unit.end, label=self._fallback_label))
                continue
            run_start = prev = todo[0]
            for i in todo[1:] + [-1]:
                if i != prev + 1:
                    piece = doc.char_span(
                        run_start, prev + 1, label=self._fallback_label, alignment_mode=self._alignment_mode
                    )
                    if piece is not None and len(piece):
                        filled.append(piece)
                    run_start = i
                prev = i
        stats["filled"] += len(filled)
        return spans + filled


@registry.llm_tasks("spacy-knowfree.POSTagging.v1")
def make_pos_task(
    lang: str = "zh",
    template: Optional[str] = None,
    examples: ExamplesConfigType = None,
    tags: List[str] = list(UPOS_TAGS),
    seg_label: str = SEG_WORD_LABEL,
    fallback_tag: str = "X",
    spans_key: str = EXTENSION_SPANS_KEY,
    alignment_mode: str = "expand",
    shard_mapper: Optional[ShardMapper] = None,
) -> POSTaggingTask:
    """POS tagging (P_pos) over the doc's segmentation, writing ``POS:<TAG>`` spans.

    tags (List[str]): tag set named in the prompt (default: the 17 UPOS tags;
        empty: let the model choose).
    seg_label (str): label of the spans (under ``spans_key``) whose text are the words.
    fallback_tag (str): tag for words the reply leaves untagged.
    spans_key (str): doc.spans key to read words from and append spans to.
    lang, template, examples, alignment_mode, shard_mapper: as for every
        extension task (:class:`~spacy_knowfree.llm.tasks.base.TaskSettings`).
    RETURNS (POSTaggingTask): the task.
    """
    settings = TaskSettings(
        lang, template, read_examples(examples, POSExample), spans_key, alignment_mode, shard_mapper
    )
    return POSTaggingTask(settings, tags, seg_label, fallback_tag)
