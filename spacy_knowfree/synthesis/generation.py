"""Entity-conditioned sentence generation with entity diversification.

After the LLM NER data generation paper, section 2:

* **Generating sentences (2.1).** All target entities of the input form the
  entity list E (E_t: those of type t). For each new sentence, n entities are
  drawn (n uniform in ``[min_entities, max_entities]``, default 1..9): a
  type first, uniformly over types ("class uniform") or in proportion to the
  number of entities of each type ("entity uniform", i.e. every entity
  equally likely), then an entity of that type. The LLM gets the entities as
  ``Type("entity")`` and few-shot examples drawn from the input (sentences
  with their entities marked the same way) and writes one sentence with the
  entities marked. Marks are read back into spans; tokens that are not
  marked but spell an entity of E are relabelled with its type. Outputs
  that do not follow the format are dropped (``unparsable``: broken marks,
  ``multiline``: more than one line), and so are sentences that contain
  none of the requested entities (``missing_entities``), are empty,
  off-language, over-long or duplicates.
* **Diversifying entities (2.2).** One entity of a kept sentence is masked as
  ``Type(such as:"entity")`` and the LLM rewrites the sentence with a
  different entity of that type, marked ``Type("new")``; the new entity
  joins E_t, so later rounds sample from a growing list. Unparsable rewrites
  are dropped; parsed ones are kept as synthetic sentences too
  (``keep_diversified``).

Generation runs in rounds of ``batch_size`` sentences; every prompt is a
deterministic function of the seed and of earlier replies, so a rerun with
the response cache reproduces an interrupted run and continues it.
"""

import random
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

from spacy.tokens import Doc
from tqdm import tqdm

from ..errors import Errors
from ..llm.runner import LLMRunner
from ..llm.tasks.prompts import PromptRenderer
from .augmenter import AugmenterBase, read_template_override
from .mentions import CharSpan, doc_mentions, find_mentions
from .summary import Summary
from .text import answer_lines, language_ratio, normalize_for_compare

SAMPLING_MODES = ("class", "entity")
_MASK_WORDS = {"zh": "例如", "en": "such as"}
#: Any remaining ``(such as:"x")`` / ``("x")`` mark after the known ones were read.
_LEFTOVER_RE = re.compile(r"[(（]\s*(?:such as|例如|如)?\s*[:：]?\s*[\"“”「『]")


def format_entity(text: str, label: str) -> str:
    """An entity as the prompts write it: ``Type("entity")``."""
    return f'{label}("{text}")'


def _mark_pattern(types: Sequence[str]) -> "re.Pattern[str]":
    alternatives = "|".join(re.escape(t) for t in sorted(set(types), key=len, reverse=True))
    return re.compile(
        r"(?P<type>" + alternatives + r")\s*[(（]\s*[\"“”「『](?P<entity>[^\"“”」』\n]*?)[\"“”」』]\s*[)）]"
    )


def parse_marked(
    reply: str, types: Sequence[str], *, single_line: bool = True
) -> Tuple[Optional[Tuple[str, List[CharSpan]]], Optional[str]]:
    """Read a sentence with ``Type("entity")`` marks.

    reply (str): the LLM reply.
    types (Sequence[str]): the entity types that may be marked.
    single_line (bool): drop replies with more than one line (the paper
        keeps one sentence per sample).
    RETURNS: ((text without marks, [(start, end, type)]), None), or (None, reason)
        with reason one of ``empty``, ``multiline``, ``unparsable``.
    """
    lines = answer_lines(reply)
    if not lines:
        return None, "empty"
    if single_line and len(lines) > 1:
        return None, "multiline"
    line = lines[0]
    pattern = _mark_pattern(types) if types else None
    out: List[str] = []
    spans: List[CharSpan] = []
    cursor = 0
    length = 0
    if pattern is not None:
        for match in pattern.finditer(line):
            before = line[cursor : match.start()]
            out.append(before)
            length += len(before)
            entity = match.group("entity").strip()
            if not entity:
                return None, "unparsable"
            out.append(entity)
            spans.append((length, length + len(entity), match.group("type")))
            length += len(entity)
            cursor = match.end()
    out.append(line[cursor:])
    text = "".join(out)
    if _LEFTOVER_RE.search(text):
        return None, "unparsable"
    stripped = text.strip()
    if not stripped:
        return None, "empty"
    shift = len(text) - len(text.lstrip())
    spans = [(s - shift, e - shift, t) for s, e, t in spans]
    return (stripped, spans), None


class EntityPool:
    """The entity list E, by type, growing as diversification finds new entities."""

    def __init__(self) -> None:
        self.by_type: Dict[str, List[str]] = {}
        self.type_of: Dict[str, str] = {}

    @classmethod
    def from_docs(cls, docs: Sequence[Doc], spans_key: str) -> "EntityPool":
        pool = cls()
        for doc in docs:
            for span in doc_mentions(doc, spans_key):
                pool.add(span.text.strip(), span.label_)
        return pool

    def add(self, text: str, label: str) -> bool:
        """Add an entity. RETURNS (bool): whether it was new (text not known under any type)."""
        if not text or text in self.type_of:
            return False
        self.type_of[text] = label
        self.by_type.setdefault(label, []).append(text)
        return True

    @property
    def types(self) -> List[str]:
        return list(self.by_type)

    def __len__(self) -> int:
        return len(self.type_of)

    def sample(self, rng: random.Random, n: int, mode: str = "class") -> List[Tuple[str, str]]:
        """Draw up to ``n`` distinct (entity, type) pairs.

        mode "class": type uniform over the types with entities left, then an
        entity uniform within the type; "entity": types weighted by how many
        entities are left in them (every entity equally likely).
        """
        left = {t: list(ents) for t, ents in self.by_type.items() if ents}
        chosen: List[Tuple[str, str]] = []
        while left and len(chosen) < n:
            types = sorted(left)
            if mode == "entity":
                label = rng.choices(types, weights=[len(left[t]) for t in types])[0]
            else:
                label = rng.choice(types)
            entity = left[label].pop(rng.randrange(len(left[label])))
            chosen.append((entity, label))
            if not left[label]:
                del left[label]
        return chosen

    def relabel(self, text: str, spans: List[CharSpan], min_chars: int = 2) -> Tuple[List[CharSpan], int]:
        """Label unmarked occurrences of known entities (longest first, no overlaps).

        RETURNS (Tuple[List[CharSpan], int]): all spans and how many were added.
        """
        taken = [False] * len(text)
        for start, end, _ in spans:
            for i in range(start, end):
                taken[i] = True
        result = list(spans)
        added = 0
        for entity in sorted(self.type_of, key=len, reverse=True):
            if len(entity) < min_chars or entity not in text:
                continue
            for start, end in find_mentions(text, entity):
                if not any(taken[start:end]):
                    result.append((start, end, self.type_of[entity]))
                    for i in range(start, end):
                        taken[i] = True
                    added += 1
        return sorted(result), added


@dataclass
class GenerationSettings:
    """Settings of :class:`EntityGenerationAugmenter`.

    n_samples (int): sentences to ask for (before filtering).
    max_entities (int): most entities per sentence (paper default 9).
    min_entities (int): fewest entities per sentence (the paper draws from 0).
    sampling (str): "class" (class uniform) or "entity" (entity uniform).
    n_examples (int): few-shot examples per prompt, drawn from the input.
    diversify (bool): run the entity diversification step.
    keep_diversified (bool): keep the rewritten sentences as samples too.
    single_line (bool): drop multi-line replies.
    max_sentence_chars (int): longest sentence kept.
    min_lang_ratio (float): least share of the expected script.
    relabel_min_chars (int): shortest entity of E relabelled when unmarked.
    max_entity_chars (int): longest new entity accepted from diversification.
    batch_size (int): sentences per round (LLM batch).
    seed (int): random seed.
    """

    n_samples: int = 100
    max_entities: int = 9
    min_entities: int = 1
    sampling: str = "class"
    n_examples: int = 5
    diversify: bool = True
    keep_diversified: bool = True
    single_line: bool = True
    max_sentence_chars: int = 300
    min_lang_ratio: float = 0.5
    relabel_min_chars: int = 2
    max_entity_chars: int = 30
    batch_size: int = 16
    seed: int = 0

    def check(self) -> None:
        checks = [
            ("n_samples", self.n_samples >= 1, "Use 1 or more."),
            ("max_entities", self.max_entities >= max(1, self.min_entities), "Use at least min_entities and 1."),
            ("min_entities", self.min_entities >= 0, "Use 0 or more."),
            ("sampling", self.sampling in SAMPLING_MODES, f"Use one of {SAMPLING_MODES}."),
            ("n_examples", self.n_examples >= 0, "Use 0 or more."),
            ("batch_size", self.batch_size >= 1, "Use 1 or more."),
        ]
        for arg, ok, hint in checks:
            if not ok:
                raise ValueError(
                    Errors.KF304.format(
                        arg=arg, where="entity-conditioned generation", value=getattr(self, arg), hint=hint
                    )
                )


class EntityGenerationAugmenter(AugmenterBase):
    """Entity-conditioned generation + entity diversification -> flagged docs
    (an :class:`~spacy_knowfree.synthesis.augmenter.Augmenter`)."""

    def __init__(
        self,
        runner: LLMRunner,
        *,
        settings: Optional[GenerationSettings] = None,
        generation_template: Optional[str] = None,
        diversification_template: Optional[str] = None,
        **common: Any,
    ):
        """settings (Optional[GenerationSettings]): sampling and filtering settings.
        generation_template / diversification_template (Optional[str]):
        Jinja templates (default: the built-in ones in ``lang``); ``common``:
        lang, spans_key, make_doc, set_ents as for
        :class:`~spacy_knowfree.synthesis.augmenter.AugmenterBase`."""
        super().__init__(runner, **common)
        self.settings = settings or GenerationSettings()
        self.settings.check()
        self.generation = PromptRenderer(generation_template or read_template_override(None, "generation", self.lang))
        self.diversification = PromptRenderer(
            diversification_template or read_template_override(None, "diversification", self.lang)
        )
        self.pool = EntityPool()

    # ------------------------------------------------------------------ prompts
    def _example(self, doc: Doc) -> Dict[str, Any]:
        text = doc.text
        pieces, cursor, entities = [], 0, []
        for span in doc_mentions(doc, self.spans_key):
            if span.start_char < cursor:  # nested: only the outer span is marked
                continue
            pieces.append(text[cursor : span.start_char])
            pieces.append(format_entity(span.text, span.label_))
            entities.append(format_entity(span.text, span.label_))
            cursor = span.end_char
        pieces.append(text[cursor:])
        return {"entities": entities, "sentence": "".join(pieces).replace("\n", " ")}

    def generation_prompt(self, entities: Sequence[Tuple[str, str]], examples: Sequence[Doc]) -> str:
        return self.generation(
            entities=[format_entity(t, label) for t, label in entities],
            examples=[self._example(doc) for doc in examples],
        )

    def diversification_prompt(self, text: str, span: CharSpan) -> str:
        start, end, label = span
        entity = text[start:end]
        mask = f'{label}({_MASK_WORDS.get(self.lang, "such as")}:"{entity}")'
        return self.diversification(sentence=text[:start] + mask + text[end:], type=label, entity=entity)

    # ------------------------------------------------------------------ checks
    def _check_sentence(self, text: str, seen: set) -> Optional[str]:
        if len(text) > self.settings.max_sentence_chars:
            return "too_long"
        if language_ratio(text, self.lang) < self.settings.min_lang_ratio:
            return "off_language"
        key = normalize_for_compare(text)
        if key in seen:
            return "duplicate"
        seen.add(key)
        return None

    # ------------------------------------------------------------------ run
    def run(self, docs: Sequence[Doc], progress: bool = True) -> Tuple[List[Doc], Summary]:
        """Generate synthetic sentences from the entities of ``docs``.

        RETURNS (Tuple[List[Doc], Summary]): flagged docs with target spans, and the counts.
        """
        settings = self.settings
        summary = Summary(title="knowfree augment generate")
        self.pool = EntityPool.from_docs(docs, self.spans_key)
        if not len(self.pool):
            raise ValueError(Errors.KF305.format(key=self.spans_key))
        summary.add_extra("entity list: entities at start", len(self.pool))
        examples_from = [doc for doc in docs if doc_mentions(doc, self.spans_key)]
        rng = random.Random(settings.seed)
        seen = {normalize_for_compare(doc.text) for doc in docs}
        kept: List[Tuple[str, List[CharSpan], Dict[str, Any]]] = []
        stats: Counter = Counter()
        bar = tqdm(total=settings.n_samples, desc="generate", unit="sent", disable=not progress)
        done = 0
        while done < settings.n_samples:
            size = min(settings.batch_size, settings.n_samples - done)
            requests = []
            for _ in range(size):
                n = rng.randint(settings.min_entities, settings.max_entities)
                entities = self.pool.sample(rng, n, settings.sampling)
                examples = rng.sample(examples_from, min(settings.n_examples, len(examples_from)))
                requests.append((entities, self.generation_prompt(entities, examples)))
            replies = self.runner([prompt for _, prompt in requests])
            fresh: List[Tuple[str, List[CharSpan]]] = []
            for (entities, _), reply in zip(requests, replies):
                summary.outputs += 1
                record: Dict[str, Any] = {"step": "generate", "entities": entities, "reply": reply}
                parsed, reason = parse_marked(reply, self.pool.types, single_line=settings.single_line)
                if parsed is not None:
                    text, spans = parsed
                    if entities and not any(find_mentions(text, ent) for ent, _ in entities):
                        reason = "missing_entities"
                    else:
                        reason = self._check_sentence(text, seen)
                if reason is not None:
                    summary.dropped[reason] += 1
                    record["status"] = reason
                else:
                    spans, added = self.pool.relabel(text, spans, settings.relabel_min_chars)
                    stats["relabelled"] += added
                    summary.kept += 1
                    kept.append((text, spans, {"step": "generate", "entities": [list(e) for e in entities]}))
                    fresh.append((text, spans))
                    record.update(status="kept", text=text, spans=spans)
                self.records.append(record)
            if settings.diversify:
                self._diversify(fresh, rng, seen, kept, summary, stats)
            done += size
            bar.update(size)
        bar.close()
        out_docs = [
            self.synthetic_doc(text, spans, stats, "entity_generation", **provenance)
            for text, spans, provenance in kept
        ]
        summary.add_extra("entity list: entities at end", len(self.pool))
        self.count_docs(summary, out_docs, stats, {"spans relabelled from the entity list": stats["relabelled"]})
        return out_docs, summary

    def _diversify(
        self,
        fresh: List[Tuple[str, List[CharSpan]]],
        rng: random.Random,
        seen: set,
        kept: List[Tuple[str, List[CharSpan], Dict[str, Any]]],
        summary: Summary,
        stats: Counter,
    ) -> None:
        settings = self.settings
        requests = []
        for text, spans in fresh:
            if spans:
                span = spans[rng.randrange(len(spans))]
                requests.append((text, span, self.diversification_prompt(text, span)))
        replies = self.runner([prompt for _, _, prompt in requests])
        for (text, span, _), reply in zip(requests, replies):
            summary.outputs += 1
            old, label = text[span[0] : span[1]], span[2]
            record: Dict[str, Any] = {"step": "diversify", "masked": old, "type": label, "reply": reply}
            parsed, reason = parse_marked(reply, self.pool.types, single_line=settings.single_line)
            new_entity = None
            if parsed is not None:
                new_text, new_spans = parsed
                candidates = [new_text[s:e] for s, e, t in new_spans if t == label]
                different = [c for c in candidates if c.casefold() != old.casefold()]
                if not candidates:
                    reason = "no_new_entity"
                elif not different:
                    reason = "same_entity"
                elif len(different[0]) > settings.max_entity_chars:
                    reason = "entity_too_long"
                else:
                    new_entity = different[0]
                    if settings.keep_diversified:
                        reason = self._check_sentence(new_text, seen)
            if new_entity is not None:
                if self.pool.add(new_entity, label):
                    stats["new_entities"] += 1
                    summary.add_extra("entity list: new entities", 1)
                    record["new_entity"] = new_entity
            if reason is not None:
                summary.dropped[f"diversify: {reason}"] += 1
                record["status"] = reason
            elif settings.keep_diversified and parsed is not None:
                new_text, new_spans = parsed
                new_spans, added = self.pool.relabel(new_text, new_spans, settings.relabel_min_chars)
                stats["relabelled"] += added
                summary.kept += 1
                kept.append((new_text, new_spans, {"step": "diversify", "replaced": old, "by": new_entity}))
                record.update(status="kept", text=new_text)
            else:
                record["status"] = "entity_only"
            self.records.append(record)
