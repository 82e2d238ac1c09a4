"""Extension entities (P_ent): ``[{entity, type}]`` -> ``ENT:<type>`` spans.

Following the paper (section 3.1, appendix G figure 9) the model names the
entity types itself; ``labels`` only suggests types in the prompt, and
``restrict_to_labels`` drops the others (counted ``unknown_type``). Every
occurrence of an entity string in the sentence becomes a span.
"""

import re
from collections import Counter
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple, Union

from spacy.language import Language
from spacy.training import Example
from spacy_llm.registry import registry
from spacy_llm.ty import ExamplesConfigType, ShardMapper

from ....constants import EXTENSION_SPANS_KEY
from ..base import ExtensionTask, Placement, TaskSettings, read_best_block
from ..examples import EntityExample, read_examples
from ..placement import find_occurrences

_TEXT_KEYS = (
    "entity",
    "text",
    "name",
    "span",
    "mention",
    "entity_text",
    "word",
    "value",
    "实体",
    "实体名称",
    "实体名",
    "名称",
    "文本",
)
_TYPE_KEYS = ("type", "label", "category", "entity_type", "class", "tag", "kind", "类型", "实体类型", "类别", "标签")
_CONTAINER_KEYS = (
    "entities",
    "entity_list",
    "items",
    "results",
    "result",
    "data",
    "output",
    "ner",
    "实体",
    "实体列表",
    "结果",
    "输出",
)
#: "北京(地点)", "北京（地点）", "北京: 地点", "北京/地点", "北京 - 地点"
_INLINE_RE = re.compile(r"^(.+?)\s*(?:[(（\[【](.+?)[)）\]】]|[:：/|]\s*(.+)|\s+-\s+(.+))$")


def _clean_type(value: Any) -> Optional[str]:
    if not isinstance(value, str):
        return None
    cleaned = " ".join(value.split()).strip("\"'“”‘’<>《》")
    return cleaned or None


def _text_of(value: Any) -> Optional[str]:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return str(value)
    return value.strip() if isinstance(value, str) else None


def _first(mapping: Dict[str, Any], keys: Tuple[str, ...]) -> Tuple[bool, Any]:
    for key in keys:
        if key in mapping:
            return True, mapping[key]
    return False, None


def read_entity_items(items: Iterable[Any], stats: Counter) -> List[Tuple[str, str]]:
    """Turn parsed reply items into (mention, type) pairs, counting bad ones.

    Accepted shapes: ``{entity, type}`` (and synonyms such as ``text``/``label``
    or Chinese keys), ``[mention, type]``, ``"mention(type)"``,
    ``{mention: type}``, ``{type: [mentions]}`` and wrappers such as
    ``{"entities": [...]}``.

    items (Iterable[Any]): items from :func:`parse_json_items`.
    stats (Counter): incremented at ``bad_item``, ``empty_text``, ``missing_type``.
    RETURNS (List[Tuple[str, str]]): the pairs, in reply order.
    """
    pairs: List[Tuple[str, str]] = []

    def add(mention: Any, etype: Any) -> None:
        text = _text_of(mention)
        if text is None:
            stats["bad_item"] += 1
        elif not text:
            stats["empty_text"] += 1
        elif _clean_type(etype) is None:
            stats["missing_type"] += 1
        else:
            pairs.append((text, _clean_type(etype) or ""))

    for item in items:
        if isinstance(item, dict):
            lowered = {str(k).strip().lower(): v for k, v in item.items()}
            has_text, mention = _first(lowered, _TEXT_KEYS)
            has_type, etype = _first(lowered, _TYPE_KEYS)
            if has_text or has_type:  # an {entity, type} object, well-formed or not
                if not has_text:
                    stats["empty_text"] += 1
                elif isinstance(mention, (list, dict)):
                    stats["bad_item"] += 1
                else:
                    add(mention, etype if has_type else None)
                continue
            if not item:
                stats["bad_item"] += 1
                continue
            for key, value in item.items():
                if isinstance(value, list):
                    if str(key).strip().lower() in _CONTAINER_KEYS:
                        pairs.extend(read_entity_items(value, stats))
                    else:
                        for mention in value:
                            add(mention, key)
                elif isinstance(value, str):
                    add(key, value)
                else:
                    stats["bad_item"] += 1
        elif isinstance(item, list):
            if len(item) == 2 and all(isinstance(v, str) for v in item):
                add(item[0], item[1])
            else:
                stats["bad_item"] += 1
        elif isinstance(item, str):
            match = _INLINE_RE.match(item.strip())
            if match:
                add(match.group(1), next(g for g in match.groups()[1:] if g))
            elif item.strip():
                stats["missing_type"] += 1
            else:
                stats["empty_text"] += 1
        else:
            stats["bad_item"] += 1
    return pairs


class ExtensionEntitiesTask(ExtensionTask):
    """spacy-llm task writing ``ENT:<type>`` spans for the entities an LLM names."""

    family = "ENT"
    #: ``spacy-knowfree.ExtensionEntities.v1`` reads ``templates/entities.v1.<lang>.jinja``.
    task_name = "entities"
    example_type = EntityExample

    def __init__(self, settings: TaskSettings, labels: Iterable[str] = (), restrict_to_labels: bool = False):
        """See :func:`make_extension_entities_task`."""
        super().__init__(settings)
        self._labels: List[str] = []
        for label in labels:
            self.add_label(label)
        self._restrict = restrict_to_labels

    # LabeledTask protocol: lets the llm component report and extend the types.
    @property
    def labels(self) -> Tuple[str, ...]:
        return tuple(self._labels)

    def add_label(self, label: str, label_definition: Optional[str] = None) -> int:
        """Suggest one more entity type. RETURNS (int): 1 if added, else 0."""
        label = _clean_type(label) or ""
        if not label or label in self._labels:
            return 0
        self._labels.append(label)
        return 1

    def clear(self) -> None:
        self._labels = []

    def _prompt_data(self, doc, shard, char_offset) -> Dict[str, Any]:
        return {"labels": list(self._labels)}

    def _map_type(self, etype: str, stats: Counter) -> Optional[str]:
        if not self._restrict:
            return etype
        wanted = {lab.casefold(): lab for lab in self._labels}
        if etype.casefold() in wanted:
            return wanted[etype.casefold()]
        stats["unknown_type"] += 1
        return None

    def _read_reply(self, text: str, reply: str, stats: Counter) -> List[Placement]:
        def placeable(found: List[Tuple[str, str]]) -> int:
            return sum(1 for mention, _ in found if find_occurrences(text, mention)[0])

        _, pairs = read_best_block(reply, read_entity_items, placeable, stats)
        placements: List[Placement] = []
        for mention, etype in pairs:
            label_type = self._map_type(etype, stats)
            if label_type is None:
                continue
            ranges, normalized = find_occurrences(text, mention)
            if not ranges:
                stats["not_found"] += 1
                continue
            if normalized:
                stats["normalized_match"] += 1
            placements.extend((start, end, f"ENT:{label_type}") for start, end in ranges)
        return placements

    def initialize(
        self,
        get_examples: Callable[[], Iterable[Example]],
        nlp: Language,
        n_prompt_examples: int = 0,
        labels: List[str] = [],
    ) -> None:
        """Add suggested types (``labels``) and few-shot examples."""
        for label in labels:
            self.add_label(label)
        super().initialize(get_examples, nlp, n_prompt_examples=n_prompt_examples)

    def _cfg(self) -> Dict[str, Any]:
        return {"labels": list(self._labels), "restrict_to_labels": self._restrict}

    def _set_cfg(self, cfg: Dict[str, Any]) -> None:
        self._labels = list(cfg.get("labels", self._labels))
        self._restrict = bool(cfg.get("restrict_to_labels", self._restrict))


@registry.llm_tasks("spacy-knowfree.ExtensionEntities.v1")
def make_extension_entities_task(
    lang: str = "zh",
    template: Optional[str] = None,
    examples: ExamplesConfigType = None,
    labels: Union[List[str], str] = [],
    restrict_to_labels: bool = False,
    spans_key: str = EXTENSION_SPANS_KEY,
    alignment_mode: str = "expand",
    shard_mapper: Optional[ShardMapper] = None,
) -> ExtensionEntitiesTask:
    """Extension-entity annotation (P_ent) as a spacy-llm task.

    labels (Union[List[str], str]): entity types suggested in the prompt
        (list or comma-separated string); empty lets the model choose.
    restrict_to_labels (bool): drop entities whose type is not in ``labels``.
    spans_key (str): doc.spans key to append ``ENT:<type>`` spans to.
    lang, template, examples, alignment_mode, shard_mapper: as for every
        extension task (:class:`~spacy_knowfree.llm.tasks.base.TaskSettings`).
    RETURNS (ExtensionEntitiesTask): the task.
    """
    label_list = [x.strip() for x in labels.split(",")] if isinstance(labels, str) else list(labels)
    settings = TaskSettings(
        lang, template, read_examples(examples, EntityExample), spans_key, alignment_mode, shard_mapper
    )
    return ExtensionEntitiesTask(settings, [x for x in label_list if x], restrict_to_labels)
