"""The filters of LLM generations: what is dropped from an explanation as a
whole and from its sentences, and why (the drop reasons of the summary)."""

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import List, Optional, Sequence

from ..errors import Errors
from .text import CLOSERS, clean_generation, is_copy, language_ratio, normalize_for_compare, split_sentences

#: Output-level drop reasons, in report order.
OUTPUT_REASONS = ("empty", "too_long", "off_language", "copy_of_source")
#: Sentence-level drop reasons, in report order.
SENTENCE_REASONS = (
    "too_short",
    "too_long",
    "off_language",
    "copy_of_source",
    "copy_of_prompt",
    "unfinished",
    "duplicate",
)
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
        """Raise KF304 for a threshold out of range."""
        checks = [
            ("min_lang_ratio", 0.0 <= self.min_lang_ratio <= 1.0, "Use a share in [0, 1]."),
            ("max_output_chars", self.max_output_chars >= 1, "Use 1 or more."),
            ("min_sentence_chars", self.min_sentence_chars >= 0, "Use 0 or more."),
            (
                "max_sentence_chars",
                self.max_sentence_chars >= max(1, self.min_sentence_chars),
                "Use at least min_sentence_chars.",
            ),
            ("copy_similarity", 0.0 < self.copy_similarity <= 1.0, "Use a ratio in (0, 1]."),
        ]
        for arg, ok, hint in checks:
            if not ok:
                raise ValueError(
                    Errors.KF304.format(arg=arg, where="the synthesis filters", value=getattr(self, arg), hint=hint)
                )


_END_PUNCT = tuple("。！？!?….;；:：") + tuple(CLOSERS)


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
    sentence: str,
    source: str,
    settings: FilterSettings,
    *,
    last: bool = False,
    seen: Optional[set] = None,
    clauses: Sequence[str] = (),
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
    reply: str,
    source: str,
    settings: FilterSettings,
    seen: Optional[set] = None,
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
        body = body[len(source.strip()) :].lstrip()  # the model echoed the sample first
        result.echo_removed = True
    sentences = split_sentences(body, settings.lang)
    clauses = prompt_clauses(prompt.replace(source, "")) if prompt else []
    for i, sentence in enumerate(sentences):
        why = sentence_drop_reason(sentence, source, settings, last=i == len(sentences) - 1, seen=seen, clauses=clauses)
        if why is None:
            result.sentences.append(sentence)
        else:
            result.sentence_reasons[why] += 1
    return result
