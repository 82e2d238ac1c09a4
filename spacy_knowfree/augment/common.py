"""Helpers shared by the peer augmenters."""
import re
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple, Union

from spacy.language import Language
from spacy.tokens import Doc, Span

from ..llm_tasks.prompts import read_template
from ..synthesis import (
    EXTENSION_SPANS_KEY, Summary, add_extension_spans, annotate_targets, annotator_component, set_target_spans,
)

CharSpan = Tuple[int, int, str]
_CJK_RE = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
#: Answer headers a model may put before its sentence.
_HEADER_RE = re.compile(
    r"^\s*(?:句子|新句子|改写|改写后的句子|输出|答案|回答|Sentence|New sentence|Rewritten|Rewritten sentence|"
    r"Paraphrase|Output|Answer)\s*\d*\s*[:：]\s*", re.I,
)
_LIST_MARK_RE = re.compile(r"^\s*(?:[-*•·]\s+|\(?\d{1,2}[.)、．]\s*)")
_QUOTE_PAIRS = {'"': '"', "“": "”", "「": "」", "'": "'", "‘": "’"}


def read_template_override(path: Optional[Union[str, Path]], name: str, lang: str) -> str:
    """The template in file ``path``, else the built-in ``name`` template in ``lang``."""
    if path:
        return Path(path).read_text(encoding="utf-8-sig")
    return read_template(name, lang)


def strip_answer(line: str) -> str:
    """Remove list markers, an answer header and enclosing quotes from one line."""
    line = _LIST_MARK_RE.sub("", line.strip())
    line = _HEADER_RE.sub("", line).strip()
    line = line.replace("**", "").strip()
    if len(line) >= 2 and line[0] in _QUOTE_PAIRS and line[-1] == _QUOTE_PAIRS[line[0]]:
        inner = line[1:-1]
        if line[0] not in inner and _QUOTE_PAIRS[line[0]] not in inner:
            line = inner.strip()
    return line


def answer_lines(reply: str) -> List[str]:
    """Non-empty lines of a reply, without code fences, headers and list markers."""
    text = unicodedata.normalize("NFC", reply or "").replace("\r\n", "\n")
    lines = []
    for line in text.split("\n"):
        if line.strip().startswith("```"):
            continue
        line = strip_answer(line)
        if line:
            lines.append(line)
    return lines


def _is_word_char(ch: str) -> bool:
    return ch.isalnum() and not _CJK_RE.match(ch)


def find_mentions(text: str, mention: str) -> List[Tuple[int, int]]:
    """Non-overlapping exact occurrences of ``mention`` in ``text``.

    Where the mention starts or ends with a letter or digit of a
    space-delimited script, the neighbouring character must not be one (so
    "Paris" is not found in "Parisian"); Chinese characters need no boundary.
    """
    if not mention:
        return []
    found = []
    start = text.find(mention)
    while start != -1:
        end = start + len(mention)
        left_ok = not (_is_word_char(mention[0]) and start > 0 and _is_word_char(text[start - 1]))
        right_ok = not (_is_word_char(mention[-1]) and end < len(text) and _is_word_char(text[end]))
        if left_ok and right_ok:
            found.append((start, end))
            start = text.find(mention, end)
        else:
            start = text.find(mention, start + 1)
    return found


def doc_mentions(doc: Doc, spans_key: str) -> List[Span]:
    """The target spans of a doc (``doc.spans[spans_key]``, else ``doc.ents``), in text order."""
    spans = list(doc.spans[spans_key]) if spans_key in doc.spans else list(doc.ents)
    return sorted(spans, key=lambda s: (s.start, -s.end))


def make_span_doc(
    make_doc: Callable[[str], Doc], text: str, spans: Sequence[CharSpan], spans_key: str,
    stats: Counter, *, set_ents: bool = True,
) -> Doc:
    """A doc for ``text`` with target spans from character offsets.

    Offsets are snapped to tokens (``alignment_mode="expand"``); spans that
    cannot be placed are counted in ``stats["unalignable"]``.
    """
    doc = make_doc(text)
    placed = []
    seen = set()
    for start, end, label in spans:
        span = doc.char_span(start, end, label=label, alignment_mode="expand")
        if span is None or len(span) == 0:
            stats["unalignable"] += 1
            continue
        if (span.start, span.end, label) in seen:
            continue
        seen.add((span.start, span.end, label))
        placed.append(span)
    set_target_spans(doc, spans_key, placed, set_ents=set_ents)
    return doc


def finish_docs(
    docs: List[Doc], summary: Summary, *, spans_key: str, annotator: Optional[Language] = None,
    knowledge: Optional[Language] = None, extension_key: str = EXTENSION_SPANS_KEY,
    set_ents: bool = True, progress: bool = False,
) -> List[Doc]:
    """Optionally re-annotate target spans with a frozen knowfree pipeline
    (the setting of the paper's appendix E) and add extension spans."""
    if annotator is not None:
        knowfree = annotator_component(annotator)
        texts = [(doc.text, doc.user_data) for doc in docs]
        fresh = [annotator.make_doc(text) for text, _ in texts]
        for doc, (_, user_data) in zip(fresh, texts):
            doc.user_data.update(user_data)
        docs = annotate_targets(fresh, annotator, knowfree, spans_key=spans_key, set_ents=set_ents,
                                progress=progress)
        summary.add_extra("target spans re-annotated by the annotator", sum(len(d.spans[spans_key]) for d in docs))
    if knowledge is not None:
        docs = add_extension_spans(docs, knowledge, extension_key=extension_key, progress=progress)
        summary.add_extra("extension spans", sum(len(d.spans[extension_key]) for d in docs))
    return docs
