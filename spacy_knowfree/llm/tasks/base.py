"""Shared machinery of the three label-extension tasks (P_ent, P_seg, P_pos).

A task renders one prompt per doc (or per shard of a long doc), reads the
replies leniently and appends labelled spans to ``doc.spans[spans_key]``
(``ENT:<type>``, ``SEG:WORD``, ``POS:<TAG>``), keeping what was already
there. Spans are always written to the *original* doc: shards are only used
to build prompts, and their character offsets inside the doc are remembered,
so annotations added by earlier components (e.g. the ``SEG:`` spans the POS
task reads) are never lost, unlike with spacy-llm's ``Doc.from_docs``-based
shard reducers (which also insert spaces between Chinese shards).

Subclasses implement :meth:`ExtensionTask._read_reply` (reply -> character
ranges with labels in shard coordinates) and may override
:meth:`ExtensionTask._prompt_data` and :meth:`ExtensionTask._finalize`.
"""

import abc
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple, Type, TypeVar, cast

import srsly
from spacy import util
from spacy.language import Language
from spacy.tokens import Doc, Span
from spacy.training import Example
from spacy_llm.ty import FewshotExample, ShardMapper

from ...constants import EXTENSION_SPANS_KEY
from ..parsing import ParsedReply, parse_json_items
from .placement import char_range_to_span, check_alignment_mode, dedupe_spans
from .prompts import PromptedTask
from .sharding import default_shard_mapper
from .stats import add_stats

#: A placed answer item: (start char, end char, label), in shard coordinates.
Placement = Tuple[int, int, str]
#: Most shard origins remembered between generate_prompts and parse_responses.
_MAX_ORIGINS = 100_000
ItemT = TypeVar("ItemT")


def read_best_block(
    reply: str,
    read: Callable[[Iterable[Any], Counter], List[ItemT]],
    placeable: Callable[[List[ItemT]], int],
    stats: Counter,
    *,
    count_dropped: bool = True,
) -> Tuple[ParsedReply, List[ItemT]]:
    """Parse a reply, choosing among its JSON blocks the one whose items place best.

    reply (str): the reply.
    read (Callable): the task's item reader (parsed items, drop counter) -> answer items.
    placeable (Callable[[List[ItemT]], int]): how many answer items can be placed in
        the text; blocks rank by it, then by their number of items.
    stats (Counter): gets the reader's drop counts, and the parser's unless
        ``count_dropped`` is False (the caller then adds ``parsed.dropped``).
    RETURNS (Tuple[ParsedReply, List[ItemT]]): the parsed reply and its answer items.
    """

    def rank(items: List[Any]) -> float:
        found = read(items, Counter())
        return placeable(found) + 0.001 * len(found)

    parsed = parse_json_items(reply, rank)
    if count_dropped:
        stats.update(parsed.dropped)
    return parsed, read(parsed.items, stats)


@dataclass
class TaskSettings:
    """What every label-extension task is set up with: the settings that the
    registered tasks share.

    lang (str): language of the built-in prompt, "zh" or "en".
    template (Optional[str]): a custom Jinja template (e.g. via spacy.FileReader.v1);
        overrides ``lang``.
    prompt_examples (Optional[List[FewshotExample]]): few-shot examples; the
        registered tasks read them from their ``examples`` setting
        (spacy.FewShotReader.v1).
    spans_key (str): ``doc.spans`` key the spans are appended to.
    alignment_mode (str): ``doc.char_span`` alignment mode ("expand" default).
    shard_mapper (Optional[ShardMapper]): splits docs that exceed the
        model's context; defaults to spacy-llm's mapper with a CJK-aware
        token estimator.
    """

    lang: str = "zh"
    template: Optional[str] = None
    prompt_examples: Optional[List[FewshotExample]] = None
    spans_key: str = EXTENSION_SPANS_KEY
    alignment_mode: str = "expand"
    shard_mapper: Optional[ShardMapper] = None


class ExtensionTask(PromptedTask, abc.ABC):
    """Base class of the KnowFREE label-extension tasks (spacy-llm task protocol)."""

    #: Label family written before the colon of every label ("ENT", "SEG", "POS").
    family: str = ""
    #: Few-shot example class (generated at initialize, restored from disk).
    example_type: Type[FewshotExample]

    def __init__(self, settings: TaskSettings):
        """Set up the shared parts from ``settings``."""
        self._init_prompt(settings.lang, settings.template, settings.prompt_examples, settings.spans_key)
        self._shard_mapper = default_shard_mapper(settings.shard_mapper)
        self._alignment_mode = check_alignment_mode(settings.alignment_mode)
        self._origins: Dict[int, Tuple[Doc, Doc, int]] = {}

    # ------------------------------------------------------------------ properties
    @property
    def alignment_mode(self) -> str:
        """The ``doc.char_span`` alignment mode spans are placed with."""
        return self._alignment_mode

    # ------------------------------------------------------------------ prompts
    def _prompt_data(self, doc: Doc, shard: Doc, char_offset: int) -> Dict[str, Any]:
        """Task-specific template variables for one shard of ``doc``."""
        return {}

    def render_prompt(self, doc: Doc, shard: Optional[Doc] = None, char_offset: int = 0) -> str:
        """The prompt for ``shard`` (default: the whole doc) of ``doc``."""
        shard = doc if shard is None else shard
        data: Dict[str, Any] = {
            "labels": [],
            "tags": [],
            "words": None,
            "words_json": None,
        }
        data.update(self._prompt_data(doc, shard, char_offset))
        return self._renderer(text=shard.text, examples=self._prompt_examples, **data)

    def _shard_offsets(self, doc: Doc, shards: List[Doc]) -> List[int]:
        """Character offset of each shard in ``doc`` (shards are contiguous slices)."""
        offsets = []
        cursor = 0
        n_tokens = 0
        for shard in shards:
            pos = doc.text.find(shard.text, cursor) if shard.text else cursor
            if pos < 0:  # a custom mapper changed the text: fall back to token counts
                pos = doc[n_tokens].idx if n_tokens < len(doc) else len(doc.text)
            offsets.append(pos)
            cursor = pos + len(shard.text)
            n_tokens += len(shard)
        return offsets

    def generate_prompts(
        self, docs: Iterable[Doc], context_length: Optional[int] = None
    ) -> Iterable[Tuple[Iterable[str], Iterable[Doc]]]:
        """One prompt per doc, or per shard when the doc exceeds ``context_length``.

        docs (Iterable[Doc]): docs to annotate.
        context_length (Optional[int]): the model's context in tokens; None
            disables sharding.
        RETURNS (Iterable[Tuple[Iterable[str], Iterable[Doc]]]): prompts and shards per doc.
        """
        for i_doc, doc in enumerate(docs):
            if context_length is None:
                shards = [doc]
            else:

                def probe(shard: Doc, i_shard: int, i_doc: int, n_shards: int, _doc: Doc = doc) -> str:
                    # Only used to measure prompt length while searching cut points.
                    return self.render_prompt(_doc, shard, max(_doc.text.find(shard.text), 0))

                shards = list(self._shard_mapper(doc, i_doc, context_length, probe)) or [doc]
            offsets = self._shard_offsets(doc, shards) if len(shards) > 1 or shards[0] is not doc else [0]
            if len(self._origins) > _MAX_ORIGINS:
                self._origins.clear()
            for shard, offset in zip(shards, offsets):
                self._origins[id(shard)] = (shard, doc, offset)
            prompts = [self.render_prompt(doc, shard, offset) for shard, offset in zip(shards, offsets)]
            yield prompts, shards

    # ------------------------------------------------------------------ replies
    @abc.abstractmethod
    def _read_reply(self, text: str, reply: str, stats: Counter) -> List[Placement]:
        """Read one reply for a shard with text ``text``; count drops in ``stats``."""

    def _finalize(self, doc: Doc, spans: List[Span], stats: Counter) -> List[Span]:
        """Doc-level post-processing of the new spans (default: none)."""
        return spans

    def parse_responses(self, shards: Iterable[Iterable[Doc]], responses: Iterable[Iterable[str]]) -> Iterable[Doc]:
        """Turn replies into spans on the original docs.

        shards (Iterable[Iterable[Doc]]): shards per doc, as from generate_prompts.
        responses (Iterable[Iterable[str]]): one reply per shard.
        RETURNS (Iterable[Doc]): the annotated docs.
        """
        for shards_for_doc, replies_for_doc in zip(shards, responses):
            shards_list = list(shards_for_doc)
            replies = list(replies_for_doc)
            stats: Counter = Counter()
            doc: Optional[Doc] = None
            placements: List[Placement] = []
            for shard, reply in zip(shards_list, replies):
                origin = self._origins.pop(id(shard), None)
                if origin is not None and origin[0] is shard:
                    owner, offset = origin[1], origin[2]
                else:  # parse_responses called directly with whole docs
                    owner, offset = shard, 0
                doc = owner if doc is None else doc
                stats["replies"] += 1
                for start, end, label in self._read_reply(shard.text, reply, stats):
                    placements.append((start + offset, end + offset, label))
            if doc is None:
                continue
            yield self._write(doc, placements, stats)

    def _write(self, doc: Doc, placements: List[Placement], stats: Counter) -> Doc:
        spans = []
        for start, end, label in placements:
            span = char_range_to_span(doc, start, end, label, self._alignment_mode, stats)
            if span is not None:
                spans.append(span)
        spans = self._finalize(doc, spans, stats)
        if self._spans_key not in doc.spans:
            doc.spans[self._spans_key] = []
        group = doc.spans[self._spans_key]
        seen = {(s.start, s.end, s.label) for s in group}
        new = dedupe_spans(spans, stats, seen)
        group.extend(new)
        stats["spans"] += len(new)
        add_stats(doc, self.family, stats)
        return doc

    # ------------------------------------------------------------------ initialize
    def initialize(
        self,
        get_examples: Callable[[], Iterable[Example]],
        nlp: Language,
        n_prompt_examples: int = 0,
    ) -> None:
        """Draw few-shot examples from annotated examples.

        get_examples (Callable[[], Iterable[Example]]): the examples.
        nlp (Language): the pipeline.
        n_prompt_examples (int): how many to add (-1: all).
        """
        for eg in get_examples():
            if 0 <= n_prompt_examples <= len(self._prompt_examples):
                break
            generated = self.example_type.generate(eg, self)
            if generated is not None:
                self._prompt_examples.append(generated)

    # ------------------------------------------------------------------ serialization
    def _cfg(self) -> Dict[str, Any]:
        """Settings saved with the pipeline (besides prompt examples)."""
        return {}

    def _set_cfg(self, cfg: Dict[str, Any]) -> None:
        """Restore settings saved by :meth:`_cfg`."""

    def _examples_data(self) -> List[Dict[str, Any]]:
        return [eg.model_dump() for eg in self._prompt_examples]

    def _set_examples(self, data: List[Dict[str, Any]]) -> None:
        self._prompt_examples = [self.example_type.model_validate(eg) for eg in data]

    def _readers(
        self, read_json: Callable[[Any], Any], read_msgpack: Callable[[Any], Any]
    ) -> Dict[str, Callable[[Any], None]]:
        """The loaders of :meth:`from_bytes` and :meth:`from_disk`: settings and
        prompt examples, read from bytes or a path by ``read_json`` and ``read_msgpack``."""
        return {
            "cfg": lambda data: self._set_cfg(read_json(data)),
            "prompt_examples": lambda data: self._set_examples(read_msgpack(data)),
        }

    def to_bytes(self, *, exclude: Tuple[str] = cast(Tuple[str], tuple())) -> bytes:
        """Serialize the task's prompt examples and settings."""
        return util.to_bytes(
            {
                "cfg": lambda: srsly.json_dumps(self._cfg()),
                "prompt_examples": lambda: srsly.msgpack_dumps(self._examples_data()),
            },
            exclude,
        )

    def from_bytes(self, bytes_data: bytes, *, exclude: Tuple[str] = cast(Tuple[str], tuple())) -> "ExtensionTask":
        """Load what :meth:`to_bytes` wrote."""
        util.from_bytes(bytes_data, self._readers(srsly.json_loads, srsly.msgpack_loads), exclude)
        return self

    def to_disk(self, path: Path, *, exclude: Tuple[str] = cast(Tuple[str], tuple())) -> None:
        """Save the task's prompt examples and settings under ``path``."""
        util.to_disk(
            path,
            {
                "cfg": lambda p: srsly.write_json(p, self._cfg()),
                "prompt_examples": lambda p: srsly.write_msgpack(p, self._examples_data()),
            },
            exclude,
        )

    def from_disk(self, path: Path, *, exclude: Tuple[str] = cast(Tuple[str], tuple())) -> "ExtensionTask":
        """Load what :meth:`to_disk` wrote."""
        util.from_disk(path, self._readers(srsly.read_json, srsly.read_msgpack), exclude)
        return self
