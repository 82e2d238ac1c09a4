"""Few-shot examples for the three tasks.

They are read with spacy-llm's ``spacy.FewShotReader.v1`` (YAML, JSON or
JSONL: a list of objects) or generated from annotated ``Example`` objects at
``nlp.initialize`` (``[initialize.components.llm] n_prompt_examples = 3``).
File formats::

    # entities
    - text: 张三在上海读书。
      entities: [{entity: 张三, type: 人名}, {entity: 上海, type: 地名}]
    # segmentation
    - text: 我爱北京。
      words: [我, 爱, 北京, 。]
    # POS
    - text: 我爱北京。
      words: [{word: 我, pos: PRON}, {word: 爱, pos: VERB}, {word: 北京, pos: PROPN}, {word: 。, pos: PUNCT}]

Entities may also be given spacy-llm's NER way, ``entities: {人名: [张三]}``,
and POS words as ``[word, pos]`` pairs.
"""

import json
from typing import Any, Callable, Dict, Iterable, List, Optional, Type, TypeVar, Union

from pydantic import BaseModel, field_validator
from spacy.tokens import Doc, Span
from spacy.training import Example
from spacy_llm.ty import FewshotExample

from .placement import non_overlapping

ExampleT = TypeVar("ExampleT", bound=BaseModel)


def read_examples(
    examples: Union[None, Iterable[Any], Callable[[], Iterable[Any]]], model: Type[ExampleT]
) -> Optional[List[ExampleT]]:
    """Validate the few-shot examples of a task config (a reader such as
    ``spacy.FewShotReader.v1``, a list, or None) as ``model`` objects."""
    raw = examples() if callable(examples) else examples
    return [model.model_validate(eg) for eg in raw] if raw else None


def _family_spans(doc: Doc, key: str, family: str) -> List[Span]:
    prefix = family + ":"
    group = doc.spans.get(key, []) if key in doc.spans else []
    return sorted((s for s in group if s.label_.startswith(prefix)), key=lambda s: (s.start, s.end))


class EntityItem(BaseModel):
    """One entity mention with its type."""

    entity: str
    type: str


class EntityExample(FewshotExample):
    """Few-shot example for ``spacy-knowfree.ExtensionEntities.v1``."""

    text: str
    entities: List[EntityItem]

    @field_validator("entities", mode="before")
    @classmethod
    def _from_label_dict(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return [{"entity": e, "type": t} for t, ents in value.items() for e in ents]
        return value

    @property
    def answer(self) -> str:
        """The expected reply as a JSON string."""
        return json.dumps([e.model_dump() for e in self.entities], ensure_ascii=False)

    @classmethod
    def generate(cls, example: Example, task: Any) -> Optional["EntityExample"]:
        ref = example.reference
        spans = _family_spans(ref, task.spans_key, "ENT")
        pairs = [(s.text, s.label_[4:]) for s in spans] or [(e.text, e.label_) for e in ref.ents]
        seen: Dict[str, str] = {}
        for text, label in pairs:
            seen.setdefault(text, label)
        return cls(text=ref.text, entities=[{"entity": t, "type": lab} for t, lab in seen.items()])


class SegmentationExample(FewshotExample):
    """Few-shot example for ``spacy-knowfree.Segmentation.v1``."""

    text: str
    words: List[str]

    @property
    def answer(self) -> str:
        return json.dumps(self.words, ensure_ascii=False)

    @classmethod
    def generate(cls, example: Example, task: Any) -> Optional["SegmentationExample"]:
        ref = example.reference
        spans = non_overlapping(_family_spans(ref, task.spans_key, "SEG"))
        if not spans:
            return None
        return cls(text=ref.text, words=[s.text for s in spans])


class POSItem(BaseModel):
    """One word with its POS tag."""

    word: str
    pos: str


class POSExample(FewshotExample):
    """Few-shot example for ``spacy-knowfree.POSTagging.v1``."""

    text: str
    words: List[POSItem]

    @field_validator("words", mode="before")
    @classmethod
    def _from_pairs(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"word": v[0], "pos": v[1]} if isinstance(v, (list, tuple)) and len(v) == 2 else v for v in value]
        return value

    @property
    def answer(self) -> str:
        return json.dumps([w.model_dump() for w in self.words], ensure_ascii=False)

    @classmethod
    def generate(cls, example: Example, task: Any) -> Optional["POSExample"]:
        ref = example.reference
        spans = non_overlapping(_family_spans(ref, task.spans_key, "POS"))
        if spans:
            items = [{"word": s.text, "pos": s.label_[4:]} for s in spans]
        elif any(t.pos_ for t in ref):
            items = [{"word": t.text, "pos": t.pos_} for t in ref if not t.is_space]
        else:
            return None
        return cls(text=ref.text, words=items)
