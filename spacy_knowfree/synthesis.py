"""Enriched explanation synthesis (KnowFREE pipeline 2, section 3.1, eq. 19).

For every source sentence of the fusion samples an LLM writes an enriched
explanation: P_exp (:mod:`.llm_tasks.explanation`) for sentences with target
entities, P_ext for sentences without. Then the generated text is

1. cleaned (echoed prompt fields, Markdown, chat prefixes) and filtered as a
   whole: ``empty``, ``too_long``, ``off_language``, ``copy_of_source``;
2. split into sentences (Chinese and English rules), which are filtered
   again: ``too_short``, ``too_long``, ``off_language``, ``copy_of_source``
   (a sentence of the source repeated), ``copy_of_prompt`` (a piece of the
   instruction or of a few-shot answer repeated), ``unfinished`` (last piece without
   end punctuation, e.g. cut at the token limit), ``duplicate``;
3. turned into docs with the annotator's tokenizer and annotated: target
   spans by the *frozen* knowfree pipeline trained on the fusion samples,
   extension spans by the same knowledge pipeline as ``knowfree extend``
   (:func:`spacy_knowfree.cli.extend.build_knowledge_pipeline`);
4. flagged synthetic (``doc.user_data["knowfree_synthetic"] = True``), so the
   ``knowfree`` component weighs them with ``beta`` (eq. 19), and written to
   a DocBin that can be combined with the fusion samples.

Every LLM call goes through an :class:`LLMRunner`, which uses the backend's
response cache (:mod:`.llm_tasks.response_cache`), so an interrupted run
resumes where it stopped and a finished one can be re-run for free. The
peer augmenters in :mod:`spacy_knowfree.augment` share the runner, the
filters, the summary and the writer.
"""
import difflib
import hashlib
import json
import re
import unicodedata
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import spacy
from spacy.language import Language
from spacy.tokens import Doc, Span
from spacy.util import minibatch
from spacy_llm.registry import registry as llm_registry
from thinc.api import Config
from tqdm import tqdm
from wasabi import msg

from .component import SYNTHETIC_FLAG, KnowFREE, find_knowfree
from .errors import Errors, Warnings
from .llm_tasks.explanation import (
    GENERATION_KEY, P_EXP, P_EXT, EntityExplanationTask, ExtensionDescriptionTask,
    make_entity_explanation_task, make_extension_description_task,
)
from .llm_tasks.response_cache import ResponseCache, cache_key
from .llm_tasks.model_config import find_model_block

#: ``doc.user_data`` key of a synthetic doc's provenance (method, source, prompt).
PROVENANCE_KEY = "knowfree_synthesis"
EXTENSION_SPANS_KEY = "knowfree_ext"

PathLike = Union[str, Path]

# ----------------------------------------------------------------------------- flags


def flag_synthetic(doc: Doc, method: str, **provenance: Any) -> Doc:
    """Mark ``doc`` as synthetic (weighted ``beta`` in the knowfree loss) and
    record where it came from in ``doc.user_data["knowfree_synthesis"]``."""
    doc.user_data[SYNTHETIC_FLAG] = True
    doc.user_data[PROVENANCE_KEY] = {"method": method, **provenance}
    return doc


def is_synthetic_doc(doc: Doc) -> bool:
    return bool(doc.user_data.get(SYNTHETIC_FLAG))


# ----------------------------------------------------------------------------- text

_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_CJK_RE = re.compile(f"[{_CJK}]")
#: Prompt fields whose content, when echoed, is input and not generated text:
#: the label and the rest of its line are removed.
_ECHO_FIELDS = (
    "指令", "要求", "样例", "实体", "关键短语", "示例", "条件",
    "Instruction", "Instructions", "Conditions", "Sample", "Entities", "Key phrases", "Examples",
)
#: Answer headers: the label is removed, what follows is kept.
_ANSWER_HEADERS = (
    "续写与讲解", "续写与解释", "续写", "讲解", "解释", "回答", "答案", "输出", "助手", "答",
    "Continuation and explanation", "Continuation", "Explanation", "Answer", "Output",
    "Response", "Assistant",
)
_ECHO_RE = re.compile(
    r"(?:^|(?<=[\s。！？.!?”」』)）]))(?:" + "|".join(map(re.escape, _ECHO_FIELDS)) + r")\s*[:：].*$",
    re.M | re.I,
)
_HEADER_RE = re.compile(
    r"^\s*(?:" + "|".join(map(re.escape, _ANSWER_HEADERS)) + r")\s*[:：]\s*", re.M | re.I
)
_FENCE_LINE_RE = re.compile(r"^\s*```.*$", re.M)
_LINE_MARKUP_RE = re.compile(
    r"^\s*(?:#{1,6}\s+|>\s*|[-*•·●]\s+|\(?\d{1,3}[.)、．]\s*|[一二三四五六七八九十]{1,3}[、.．]\s*)"
)
_INLINE_MARKUP_RE = re.compile(r"\*\*|__|`")
_ZH_SPACE_RE = re.compile(f"(?<=[{_CJK}，。、；：！？“”（）《》])[ \t\u3000]+(?=[{_CJK}，。、；：！？“”（）《》])")


def clean_generation(text: str, lang: str = "zh") -> str:
    """Strip what is not generated prose from an LLM reply.

    Removes code fences, Markdown emphasis, headings, quote and list markers,
    answer headers ("续写与讲解：", "Answer:"), and echoed prompt fields
    ("实体：[...]", "Sample: ...") up to the end of their line; collapses
    spaces (and, for Chinese, removes spaces between Chinese characters).
    Line breaks are kept: they end sentences.

    text (str): the reply.
    lang (str): "zh", "en", ...
    RETURNS (str): the cleaned text (may be empty).
    """
    text = unicodedata.normalize("NFC", text or "").replace("\r\n", "\n").replace("\r", "\n")
    text = text.replace("\ufffd", "")  # half of a multi-byte character cut at the token limit
    text = _FENCE_LINE_RE.sub("", text)
    text = _INLINE_MARKUP_RE.sub("", text)
    lines = []
    for line in text.split("\n"):
        line = _LINE_MARKUP_RE.sub("", line)
        line = _HEADER_RE.sub("", line)
        line = _ECHO_RE.sub("", line)
        line = _HEADER_RE.sub("", line)
        line = re.sub(r"[ \t\u3000]+", " ", line).strip()
        if lang == "zh":
            line = _ZH_SPACE_RE.sub("", line)
        if line:
            lines.append(line)
    return "\n".join(lines)


_ZH_TERMINATORS = "。！？!?…"
_CLOSERS = "”’」』）)]】》\"'"
_EN_ABBREVIATIONS = {
    "mr", "mrs", "ms", "dr", "prof", "st", "sr", "jr", "vs", "etc", "e.g", "i.e", "inc", "ltd",
    "co", "no", "fig", "u.s", "u.k", "dept", "est", "approx", "mt", "jan", "feb", "mar", "apr",
    "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec",
}
_EN_BOUNDARY_RE = re.compile(r"[.!?]+[\"')\]”’]*\s+")


def _split_zh_line(line: str) -> List[str]:
    pieces, start, i, n = [], 0, 0, len(line)
    while i < n:
        ch = line[i]
        is_end = ch in _ZH_TERMINATORS
        if ch == "." and i > 0:  # an ASCII full stop ends a sentence unless inside a number
            prev_digit = line[i - 1].isdigit()
            next_char = line[i + 1] if i + 1 < n else ""
            is_end = not (prev_digit and next_char.isdigit()) and (not next_char or next_char.isspace()
                                                                    or bool(_CJK_RE.match(next_char)))
        if is_end:
            j = i + 1
            while j < n and (line[j] in _ZH_TERMINATORS or line[j] == "."):
                j += 1
            while j < n and line[j] in _CLOSERS:
                j += 1
            pieces.append(line[start:j])
            start = i = j
            continue
        i += 1
    pieces.append(line[start:])
    return [p.strip() for p in pieces if p.strip()]


def _split_en_line(line: str) -> List[str]:
    pieces, start = [], 0
    for match in _EN_BOUNDARY_RE.finditer(line):
        end = match.end()
        if end >= len(line):
            break
        following = line[end]
        if not (following.isupper() or following.isdigit() or following in "\"'“‘([" or _CJK_RE.match(following)):
            continue
        before = line[start:match.start()].split()
        word = before[-1].lower().rstrip(".") if before else ""
        if match.group(0).startswith(".") and (word in _EN_ABBREVIATIONS or (len(word) == 1 and word.isalpha())):
            continue
        pieces.append(line[start:end])
        start = end
    pieces.append(line[start:])
    return [p.strip() for p in pieces if p.strip()]


def split_sentences(text: str, lang: str = "zh") -> List[str]:
    """Split (cleaned) text into sentences; line breaks always end a sentence.

    Chinese: after 。！？!?… (and an ASCII full stop not inside a number),
    keeping closing quotes and brackets with their sentence. English (and
    other languages): after . ! ? followed by a space and a capital, digit,
    quote or bracket, except after common abbreviations and initials.

    text (str): the text.
    lang (str): "zh" for the Chinese rules, anything else for the English ones.
    RETURNS (List[str]): the sentences, stripped, none empty.
    """
    splitter = _split_zh_line if lang == "zh" else _split_en_line
    return [s for line in (text or "").split("\n") for s in splitter(line)]


def language_ratio(text: str, lang: str) -> float:
    """Share of the letters of ``text`` written in ``lang``'s script.

    Chinese: CJK characters among CJK characters and letters; English and
    other Latin-script languages: Latin letters among all letters. Other
    languages are not checked (1.0). Text without letters scores 0.0.
    """
    letters = [ch for ch in text if ch.isalpha()]
    if not letters:
        return 0.0
    if lang == "zh":
        return sum(1 for ch in letters if _CJK_RE.match(ch)) / len(letters)
    if lang in ("en", "de", "fr", "es", "it", "nl", "pt"):
        return sum(1 for ch in letters if ord(ch) < 0x250) / len(letters)
    return 1.0


def normalize_for_compare(text: str) -> str:
    """Case-, width-, space- and punctuation-insensitive form of ``text``."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return "".join(ch for ch in text if ch.isalnum())


def is_copy(candidate: str, source: str, similarity: float = 0.9) -> bool:
    """Whether ``candidate`` merely repeats (part of) ``source``.

    True when, ignoring case, spaces and punctuation, it equals the source,
    is contained in it, or is at least ``similarity`` similar to it
    (difflib ratio).
    """
    cand, src = normalize_for_compare(candidate), normalize_for_compare(source)
    if not cand or not src:
        return False
    if cand in src:
        return True
    return difflib.SequenceMatcher(None, cand, src, autojunk=False).ratio() >= similarity


# ----------------------------------------------------------------------------- filters

#: Output-level drop reasons, in report order.
OUTPUT_REASONS = ("empty", "too_long", "off_language", "copy_of_source")
#: Sentence-level drop reasons, in report order.
SENTENCE_REASONS = ("too_short", "too_long", "off_language", "copy_of_source", "copy_of_prompt",
                    "unfinished", "duplicate")
_SENTENCE_SPLIT = re.compile(r"[\n。！？!?；;]+|[：:](?=\S)")
_CLAUSE_SPLIT = re.compile(r"[\n。！？!?；;，,：:]+")


_PROMPT_ENTITY = re.compile(r"'[^'\n]*?\s?\(([^()'\n]+)\)'")


def strip_type_tags(text: str, prompt: str) -> str:
    """Remove the ``(TYPE)`` tags the prompt puts after its entities
    ('张三(人名)') where the model copied them into its text."""
    types = set(_PROMPT_ENTITY.findall(prompt)) if prompt else set()
    if not types:
        return text
    tags = "|".join(re.escape(t) for t in sorted(types, key=len, reverse=True))
    return re.sub(rf"\s?[(（](?:{tags})[)）]", "", text)


def prompt_clauses(prompt: str, min_chars: int = 4) -> List[str]:
    """The sentences and clauses of a prompt (instruction, requirements,
    few-shot examples) that a generated sentence must not merely repeat."""
    pieces = _SENTENCE_SPLIT.split(prompt) + _CLAUSE_SPLIT.split(prompt)
    return list(dict.fromkeys(p for p in pieces if len(normalize_for_compare(p)) >= min_chars))


@dataclass
class FilterSettings:
    """Thresholds of the generation filters.

    lang (str): expected language ("zh", "en", ...).
    min_lang_ratio (float): least share of letters in the expected script
        (:func:`language_ratio`), for whole outputs and single sentences.
    max_output_chars (int): longest cleaned output kept (runaway generations).
    min_sentence_chars (int): shortest sentence kept (non-space characters).
    max_sentence_chars (int): longest sentence kept.
    copy_similarity (float): similarity to the source at which text counts
        as a copy (:func:`is_copy`).
    drop_unfinished (bool): drop a last sentence without end punctuation.
    """

    lang: str = "zh"
    min_lang_ratio: float = 0.5
    max_output_chars: int = 2000
    min_sentence_chars: int = 4
    max_sentence_chars: int = 200
    copy_similarity: float = 0.9
    drop_unfinished: bool = True

    def check(self) -> None:
        checks = [
            ("min_lang_ratio", 0.0 <= self.min_lang_ratio <= 1.0, "Use a share in [0, 1]."),
            ("max_output_chars", self.max_output_chars >= 1, "Use 1 or more."),
            ("min_sentence_chars", self.min_sentence_chars >= 0, "Use 0 or more."),
            ("max_sentence_chars", self.max_sentence_chars >= max(1, self.min_sentence_chars),
             "Use at least min_sentence_chars."),
            ("copy_similarity", 0.0 < self.copy_similarity <= 1.0, "Use a ratio in (0, 1]."),
        ]
        for arg, ok, hint in checks:
            if not ok:
                raise ValueError(Errors.KF304.format(arg=arg, where="the synthesis filters",
                                                     value=getattr(self, arg), hint=hint))


_END_PUNCT = tuple("。！？!?….;；:：") + tuple(_CLOSERS)


def output_drop_reason(cleaned: str, source: str, settings: FilterSettings) -> Optional[str]:
    """Why a whole (cleaned) output is dropped, or None to keep it."""
    if not cleaned.strip():
        return "empty"
    if len(cleaned) > settings.max_output_chars:
        return "too_long"
    if language_ratio(cleaned, settings.lang) < settings.min_lang_ratio:
        return "off_language"
    if source and is_copy(cleaned, source, settings.copy_similarity):
        return "copy_of_source"
    return None


def sentence_drop_reason(
    sentence: str, source: str, settings: FilterSettings, *, last: bool = False,
    seen: Optional[set] = None, clauses: Sequence[str] = (),
) -> Optional[str]:
    """Why one sentence is dropped, or None to keep it (adds kept ones to ``seen``).

    clauses (Sequence[str]): the prompt's clauses (:func:`prompt_clauses`).
    """
    size = len("".join(sentence.split()))
    if size < settings.min_sentence_chars:
        return "too_short"
    if size > settings.max_sentence_chars:
        return "too_long"
    if language_ratio(sentence, settings.lang) < settings.min_lang_ratio:
        return "off_language"
    if source and is_copy(sentence, source, settings.copy_similarity):
        return "copy_of_source"
    if any(is_copy(sentence, clause, settings.copy_similarity) for clause in clauses):
        return "copy_of_prompt"
    if last and settings.drop_unfinished and not sentence.rstrip().endswith(_END_PUNCT):
        return "unfinished"
    if seen is not None:
        key = normalize_for_compare(sentence)
        if key in seen:
            return "duplicate"
        seen.add(key)
    return None


@dataclass
class FilteredOutput:
    """One LLM output after cleaning and filtering."""

    cleaned: str
    reason: Optional[str]
    sentences: List[str] = field(default_factory=list)
    sentence_reasons: Counter = field(default_factory=Counter)
    echo_removed: bool = False


def filter_generation(
    reply: str, source: str, settings: FilterSettings, seen: Optional[set] = None,
    prompt: str = "",
) -> FilteredOutput:
    """Clean one explanation, filter it, split it and filter its sentences.

    reply (str): the LLM's reply.
    source (str): the source sentence it was generated from.
    settings (FilterSettings): the thresholds.
    seen (Optional[set]): normalized sentences kept so far (for ``duplicate``).
    prompt (str): the prompt of the reply; sentences repeating a piece of it
        (small models often recite the instruction) are dropped.
    RETURNS (FilteredOutput): the kept sentences and the counts.
    """
    cleaned = strip_type_tags(clean_generation(reply, settings.lang), prompt)
    reason = output_drop_reason(cleaned, source, settings)
    result = FilteredOutput(cleaned=cleaned, reason=reason)
    if reason is not None:
        return result
    body = cleaned
    if source and body.startswith(source.strip()) and len(body) > len(source.strip()):
        body = body[len(source.strip()):].lstrip()  # the model echoed the sample first
        result.echo_removed = True
    sentences = split_sentences(body, settings.lang)
    clauses = prompt_clauses(prompt.replace(source, "")) if prompt else []
    for i, sentence in enumerate(sentences):
        why = sentence_drop_reason(sentence, source, settings, last=i == len(sentences) - 1, seen=seen,
                                   clauses=clauses)
        if why is None:
            result.sentences.append(sentence)
        else:
            result.sentence_reasons[why] += 1
    return result


def group_sentences(sentences: Sequence[str], max_chars: int = 0, lang: str = "zh") -> List[str]:
    """Join consecutive sentences into doc texts of at most ``max_chars``
    characters (0: one sentence per doc)."""
    if max_chars <= 0:
        return list(sentences)
    joiner = "" if lang == "zh" else " "
    groups: List[str] = []
    current = ""
    for sentence in sentences:
        candidate = current + joiner + sentence if current else sentence
        if current and len(candidate) > max_chars:
            groups.append(current)
            current = sentence
        else:
            current = candidate
    if current:
        groups.append(current)
    return groups


# ----------------------------------------------------------------------------- summary


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
        self.extra[name] = self.extra.get(name, 0) + int(count)

    def rows(self) -> List[Tuple[str, Any]]:
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
        return {
            "outputs": self.outputs, "kept": self.kept, "dropped": dict(self.dropped),
            "sentences": self.sentences, "sentences_kept": self.sentences_kept,
            "sentence_dropped": dict(self.sentence_dropped), "docs": self.docs,
            "llm": dict(self.llm), "extra": dict(self.extra),
        }

    def print(self) -> None:
        msg.table(self.rows(), header=(self.title, "count"), divider=True, aligns=("l", "r"), max_col=60)


# ----------------------------------------------------------------------------- LLM access


class LLMRunner:
    """Ask a spacy-llm model one reply per prompt, through a response cache.

    The package's own backends (``spacy-knowfree.LocalCausalLM.v1``,
    ``spacy-knowfree.OpenAICompatible.v1``) cache replies themselves: a
    runner gives them ``cache`` when they have none. Any other ``llm_models``
    model is wrapped: the runner looks each prompt up in ``cache`` itself and
    stores the replies. Either way an interrupted run asks only for the
    prompts it has no reply for.

    Counts (``counts``): prompts asked, sent to the LLM ("made") and
    answered from the cache.
    """

    def __init__(self, model: Callable, cache: Optional[ResponseCache] = None, model_id: Optional[str] = None):
        """model (Callable): a spacy-llm model (prompts per doc -> replies per doc).
        cache (Optional[ResponseCache]): the reply cache to use when the model has none.
        model_id (Optional[str]): identifies the model in cache keys of wrapped models
            (default: its class name).
        """
        self.model = model
        self.native = hasattr(model, "cache")
        if self.native and getattr(model, "cache") is None and cache is not None:
            model.cache = cache  # type: ignore[attr-defined]
        self.cache: Optional[ResponseCache] = getattr(model, "cache") if self.native else cache
        self.model_id = model_id or f"{type(model).__module__}.{type(model).__qualname__}"
        self.counts = {"prompts": 0, "made": 0, "cached": 0}

    def _ask(self, prompts: List[str]) -> List[str]:
        replies = [list(r) for r in self.model([[p] for p in prompts])]
        if len(replies) != len(prompts) or any(len(r) != 1 for r in replies):
            raise ValueError(Errors.KF303.format(got=[len(r) for r in replies], expected=len(prompts)))
        return [str(r[0]) for r in replies]

    def __call__(self, prompts: Sequence[str]) -> List[str]:
        """One reply per prompt, in order.

        prompts (Sequence[str]): the prompts.
        RETURNS (List[str]): the replies.
        """
        prompts = list(prompts)
        if not prompts:
            return []
        distinct = list(dict.fromkeys(prompts))
        self.counts["prompts"] += len(distinct)
        if self.native:
            calls = getattr(self.model, "calls", None)
            cache = self.cache
            before = (calls.made, calls.cached) if calls is not None else (
                (cache.added, cache.hits) if cache is not None else (0, 0))
            answers = dict(zip(distinct, self._ask(distinct)))
            if calls is not None:
                made, cached = calls.made - before[0], calls.cached - before[1]
            elif cache is not None:
                made, cached = cache.added - before[0], cache.hits - before[1]
            else:
                made, cached = len(distinct), 0
            self.counts["made"] += made
            self.counts["cached"] += cached
            return [answers[p] for p in prompts]
        answers: Dict[str, str] = {}
        keys = {p: cache_key("llm-runner", self.model_id, p, {}) for p in distinct}
        todo = []
        for prompt in distinct:
            hit = self.cache.get(keys[prompt]) if self.cache is not None else None
            if hit is None:
                todo.append(prompt)
            else:
                answers[prompt] = hit
        self.counts["cached"] += len(distinct) - len(todo)
        if todo:
            for prompt, reply in zip(todo, self._ask(todo)):
                answers[prompt] = reply
                if self.cache is not None:
                    self.cache.put(keys[prompt], reply, {"backend": "llm-runner", "model": self.model_id})
            self.counts["made"] += len(todo)
        return [answers[p] for p in prompts]


def _config_id(block: Any) -> str:
    payload = json.dumps(block, ensure_ascii=False, sort_keys=True, default=str)
    return "config:" + hashlib.sha256(payload.encode("utf8")).hexdigest()[:16]


def read_llm_config(path: PathLike, overrides: Optional[Dict[str, Any]] = None) -> Config:
    """Read an LLM config: a ``[model]`` block (or a knowledge pipeline with
    ``llm`` components) and optional task blocks; ``overrides`` as in
    ``spacy train`` (``{"vars.endpoint": ...}``)."""
    return spacy.util.load_config(Path(path), overrides=overrides or {}, interpolate=True)


def find_llm_model_block(config: Config, section: Optional[str] = None, path: PathLike = "the config") -> Dict[str, Any]:
    """The ``@llm_models`` block of an LLM config (see
    :func:`spacy_knowfree.llm_tasks.model_config.find_model_block`); raises
    KF301 naming ``path`` when there is none."""
    try:
        return find_model_block(config, section)[1]
    except KeyError:
        raise ValueError(Errors.KF301.format(path=path)) from None


def build_llm_runner(
    config: Optional[Config] = None,
    *,
    cache_path: Optional[PathLike] = None,
    default_model: Optional[Dict[str, Any]] = None,
    model_section: Optional[str] = None,
) -> LLMRunner:
    """The runner for a config's ``@llm_models`` block, or for the embedded SmolLM2.

    config (Optional[Config]): from :func:`read_llm_config`; None uses
        ``spacy-knowfree.LocalCausalLM.v1`` with ``default_model`` settings.
    cache_path (Optional[PathLike]): response cache used when the model has none.
    default_model (Optional[Dict[str, Any]]): settings of the default backend.
    model_section (Optional[str]): dotted section of the model block (see
        :func:`find_llm_model_block`).
    RETURNS (LLMRunner): the runner.
    """
    if config is None:
        block: Dict[str, Any] = {"@llm_models": "spacy-knowfree.LocalCausalLM.v1", **(default_model or {})}
    else:
        block = find_llm_model_block(config, model_section)
    model = llm_registry.resolve(Config({"model": block}), validate=True)["model"]
    cache = ResponseCache(cache_path) if cache_path is not None else None
    return LLMRunner(model, cache=cache, model_id=_config_id(block))


def resolve_task(config: Optional[Config], section: str, expected: type, default: Callable[[], Any]) -> Any:
    """The task built from ``[section]`` of an LLM config, else ``default()``."""
    if config is None or section not in config:
        return default()
    task = llm_registry.resolve(Config({"task": dict(config[section])}), validate=True)["task"]
    if not isinstance(task, expected):
        raise ValueError(Errors.KF302.format(section=section, path="the LLM config",
                                             expected=expected.__name__, got=type(task).__name__))
    return task


# ----------------------------------------------------------------------------- annotation


def load_annotator(path: PathLike) -> Tuple[Language, KnowFREE]:
    """Load the frozen knowfree pipeline trained on the fusion samples.

    RETURNS (Tuple[Language, KnowFREE]): the pipeline and its (first) knowfree component.
    """
    nlp = spacy.load(path)
    return nlp, annotator_component(nlp, path)


def annotator_component(annotator: Language, path: Any = "(given pipeline)") -> KnowFREE:
    """The (first) knowfree component of an annotator pipeline; KF300 if it has none."""
    knowfree = find_knowfree(annotator)
    if knowfree is None:
        raise ValueError(Errors.KF300.format(path=path, pipes=annotator.pipe_names))
    return knowfree


def _spans_overlap(spans: Sequence[Span]) -> bool:
    last = -1
    for span in sorted(spans, key=lambda s: (s.start, s.end)):
        if span.start < last:
            return True
        last = max(last, span.end)
    return False


def set_target_spans(doc: Doc, key: str, spans: Iterable[Span], set_ents: bool = True) -> None:
    """Write target spans (without scores) to ``doc.spans[key]``, and to
    ``doc.ents`` when asked and they do not overlap."""
    spans = sorted(spans, key=lambda s: (s.start, s.end))
    doc.spans[key] = [Span(doc, s.start, s.end, label=s.label_) for s in spans]
    if set_ents and not _spans_overlap(spans):
        doc.ents = list(doc.spans[key])


def annotate_targets(
    docs: Sequence[Doc], annotator: Language, knowfree: KnowFREE, *, spans_key: Optional[str] = None,
    set_ents: bool = True, batch_size: int = 64, progress: bool = False,
) -> List[Doc]:
    """Target spans from the frozen annotator (its knowfree component's key,
    copied to ``spans_key`` if that differs)."""
    out = []
    stream = annotator.pipe(docs, batch_size=batch_size)
    for doc in tqdm(stream, total=len(docs), desc="annotate", unit="doc", disable=not progress, leave=False):
        spans = list(doc.spans[knowfree.key]) if knowfree.key in doc.spans else []
        target_key = spans_key or knowfree.key
        if target_key != knowfree.key and knowfree.key in doc.spans:
            del doc.spans[knowfree.key]
        set_target_spans(doc, target_key, spans, set_ents=set_ents)
        out.append(doc)
    return out


def add_extension_spans(
    docs: Sequence[Doc], knowledge: Language, *, extension_key: str = EXTENSION_SPANS_KEY,
    batch_size: int = 32, progress: bool = False,
) -> List[Doc]:
    """Extension spans from the knowledge pipeline of ``knowfree extend``;
    every doc gets a (possibly empty) ``doc.spans[extension_key]`` group."""
    out = []
    stream = knowledge.pipe(docs, batch_size=batch_size)
    for doc in tqdm(stream, total=len(docs), desc="extension spans", unit="doc", disable=not progress, leave=False):
        if extension_key not in doc.spans:
            doc.spans[extension_key] = []
        out.append(doc)
    return out


def build_knowledge(
    config_path: Optional[PathLike], families: Sequence[str], user_dict: Optional[PathLike],
    overrides: Optional[Dict[str, Any]] = None,
) -> Language:
    """The extension-span pipeline of ``knowfree extend`` (jieba lexicon by default)."""
    from .cli.extend import build_knowledge_pipeline

    args: List[Any] = [Path(config_path) if config_path else None, list(families),
                       Path(user_dict) if user_dict else None]
    if overrides:
        args.append(overrides)
    return build_knowledge_pipeline(*args)


# ----------------------------------------------------------------------------- synthesis


@dataclass
class SynthesisSettings:
    """Settings of :class:`Synthesizer`.

    spans_key (Optional[str]): key of the target spans in the source docs
        (default: the annotator's key); P_exp lists them, and synthetic docs
        get their target spans under the same key.
    extension_key (str): key of the extension spans.
    batch_size (int): source docs per LLM request batch (replies reach the
        cache batch by batch).
    max_doc_chars (int): join consecutive kept sentences into docs of at
        most this many characters (0: one sentence per doc).
    set_ents (bool): also set ``doc.ents`` from non-overlapping target spans.
    limit (int): use only the first N source docs (0: all).
    filters (FilterSettings): the generation filters.
    """

    spans_key: Optional[str] = None
    extension_key: str = EXTENSION_SPANS_KEY
    batch_size: int = 16
    max_doc_chars: int = 0
    set_ents: bool = True
    limit: int = 0
    filters: FilterSettings = field(default_factory=FilterSettings)


class Synthesizer:
    """Enriched explanation synthesis: LLM explanations -> annotated, flagged docs."""

    def __init__(
        self,
        runner: LLMRunner,
        annotator: Language,
        *,
        knowledge: Optional[Language] = None,
        explanation_task: Optional[EntityExplanationTask] = None,
        description_task: Optional[ExtensionDescriptionTask] = None,
        settings: Optional[SynthesisSettings] = None,
    ):
        """runner (LLMRunner): the LLM.
        annotator (Language): frozen knowfree pipeline trained on the fusion samples.
        knowledge (Optional[Language]): extension-span pipeline (None: no extension spans).
        explanation_task / description_task: P_exp / P_ext (default: the
            built-in templates in ``settings.filters.lang``).
        settings (Optional[SynthesisSettings]): the settings.
        """
        self.settings = settings or SynthesisSettings()
        self.settings.filters.check()
        self.runner = runner
        self.annotator = annotator
        self.knowfree = annotator_component(annotator)
        self.spans_key = self.settings.spans_key or self.knowfree.key
        lang = self.settings.filters.lang
        self.explanation_task = explanation_task or make_entity_explanation_task(lang=lang, spans_key=self.spans_key)
        self.description_task = description_task or make_extension_description_task(lang=lang)
        self.knowledge = knowledge
        self.records: List[Dict[str, Any]] = []

    def _route(self, doc: Doc) -> str:
        return P_EXP if self.explanation_task.entities(doc) else P_EXT

    def generate(self, sources: Sequence[Doc], summary: Summary, progress: bool = True) -> List[Tuple[int, str, List[str]]]:
        """Ask the LLM for every source doc and filter the replies.

        RETURNS (List[Tuple[int, str, List[str]]]): (source index, prompt id, kept sentences).
        """
        settings = self.settings
        seen: set = set()
        kept: List[Tuple[int, str, List[str]]] = []
        indexed = list(enumerate(sources))
        bar = tqdm(total=len(indexed), desc="explain", unit="doc", disable=not progress)
        for batch in minibatch(indexed, settings.batch_size):
            routes = [self._route(doc) for _, doc in batch]
            prompts = [
                (self.explanation_task if route == P_EXP else self.description_task).render_prompt(doc)
                for route, (_, doc) in zip(routes, batch)
            ]
            replies = self.runner(prompts)
            for route, (index, doc), prompt, reply in zip(routes, batch, prompts, replies):
                task = self.explanation_task if route == P_EXP else self.description_task
                # on a copy: the source docs are left as they were
                doc = next(iter(task.parse_responses([[doc.copy()]], [[reply]])))
                text = doc.user_data[GENERATION_KEY][-1]["text"]
                result = filter_generation(text, doc.text, settings.filters, seen, prompt=prompt)
                summary.outputs += 1
                summary.add_extra(f"prompts {route}")
                record = {"source": index, "prompt": route, "source_text": doc.text, "reply": text}
                if result.reason is not None:
                    summary.dropped[result.reason] += 1
                    record["status"] = result.reason
                else:
                    n_sent = len(result.sentences) + sum(result.sentence_reasons.values())
                    summary.sentences += n_sent
                    summary.sentences_kept += len(result.sentences)
                    summary.sentence_dropped.update(result.sentence_reasons)
                    if result.sentences:
                        summary.kept += 1
                        kept.append((index, route, result.sentences))
                        record["status"] = "kept"
                    else:
                        summary.dropped["no_sentence_left"] += 1
                        record["status"] = "no_sentence_left"
                    record["sentences"] = result.sentences
                    record["sentence_drops"] = dict(result.sentence_reasons)
                self.records.append(record)
            bar.update(len(batch))
        bar.close()
        return kept

    def synthesize(self, sources: Sequence[Doc], progress: bool = True) -> Tuple[List[Doc], Summary]:
        """Generate, filter, annotate and flag.

        sources (Sequence[Doc]): the fusion samples (synthetic docs among
            them are skipped).
        progress (bool): show progress bars.
        RETURNS (Tuple[List[Doc], Summary]): the synthetic docs and the counts.
        """
        summary = Summary(title="knowfree synthesize")
        settings = self.settings
        pool = [doc for doc in sources if not is_synthetic_doc(doc)]
        if len(pool) < len(sources):
            summary.add_extra("source docs skipped (already synthetic)", len(sources) - len(pool))
        if settings.limit > 0:
            pool = pool[: settings.limit]
        missing = sum(1 for doc in pool if self.spans_key not in doc.spans)
        if pool and missing:
            warnings.warn(Warnings.KW300.format(key=self.spans_key, count=missing, total=len(pool)))
        kept = self.generate(pool, summary, progress=progress)
        texts: List[Tuple[str, Dict[str, Any]]] = []
        for index, route, sentences in kept:
            for text in group_sentences(sentences, settings.max_doc_chars, settings.filters.lang):
                texts.append((text, {"source": index, "prompt": route, "source_text": pool[index].text}))
        docs = [self.annotator.make_doc(text) for text, _ in texts]
        docs = annotate_targets(docs, self.annotator, self.knowfree, spans_key=self.spans_key,
                                set_ents=settings.set_ents, progress=progress)
        if self.knowledge is not None:
            docs = add_extension_spans(docs, self.knowledge, extension_key=settings.extension_key,
                                       progress=progress)
        for doc, (_, provenance) in zip(docs, texts):
            flag_synthetic(doc, "explanation", **provenance)
        summary.docs = len(docs)
        summary.add_extra("target spans", sum(len(d.spans[self.spans_key]) for d in docs))
        if self.knowledge is not None:
            summary.add_extra("extension spans", sum(len(d.spans[settings.extension_key]) for d in docs))
        summary.llm = dict(self.runner.counts)
        return docs, summary


def synthesize(
    sources: Sequence[Doc],
    annotator: Language,
    runner: LLMRunner,
    *,
    knowledge: Optional[Language] = None,
    settings: Optional[SynthesisSettings] = None,
    progress: bool = False,
) -> Tuple[List[Doc], Summary]:
    """Functional form of :meth:`Synthesizer.synthesize` with the built-in prompts."""
    return Synthesizer(runner, annotator, knowledge=knowledge, settings=settings).synthesize(sources, progress)


def write_records(records: Iterable[Dict[str, Any]], path: PathLike) -> None:
    """Write per-output records (reply, fate, kept sentences) as JSONL."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf8") as file_:
        for record in records:
            file_.write(json.dumps(record, ensure_ascii=False) + "\n")


def iter_batches(items: Sequence[Any], size: int) -> Iterator[List[Any]]:
    """Consecutive batches of ``size`` items."""
    for start in range(0, len(items), max(1, size)):
        yield list(items[start:start + size])
