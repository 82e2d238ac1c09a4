"""The text of LLM replies: one cleaner for every kind of reply (explanations,
generated sentences, paraphrases), sentence splitting and joining, the share
of the expected script, and copy checks."""

import difflib
import re
import unicodedata
from typing import List, Sequence

from ..constants import CJK_CHAR_RE, CJK_RANGES

# ----------------------------------------------------------------------------- cleaning

#: Prompt fields of the explanation templates whose content, when echoed, is
#: input and not generated text: the label and the rest of its line are removed.
EXPLANATION_ECHO_FIELDS = (
    "指令",
    "要求",
    "样例",
    "实体",
    "关键短语",
    "示例",
    "条件",
    "Instruction",
    "Instructions",
    "Conditions",
    "Sample",
    "Entities",
    "Key phrases",
    "Examples",
)
#: Answer headers of explanations: the label is removed, what follows is kept.
EXPLANATION_HEADERS = (
    "续写与讲解",
    "续写与解释",
    "续写",
    "讲解",
    "解释",
    "回答",
    "答案",
    "输出",
    "助手",
    "答",
    "Continuation and explanation",
    "Continuation",
    "Explanation",
    "Answer",
    "Output",
    "Response",
    "Assistant",
)
#: Answer headers of one-sentence replies (generated sentences, paraphrases).
SENTENCE_HEADERS = (
    "句子",
    "新句子",
    "改写",
    "改写后的句子",
    "输出",
    "答案",
    "回答",
    "Sentence",
    "New sentence",
    "Rewritten",
    "Rewritten sentence",
    "Paraphrase",
    "Output",
    "Answer",
)

_FENCE_RE = re.compile(r"^\s*```")
_INLINE_MARKUP_RE = re.compile(r"\*\*|__|`")
_LINE_MARKUP_RE = re.compile(
    r"^\s*(?:#{1,6}\s+|>\s*|[-*•·●]\s+|\(?\d{1,3}[.)、．](?!\d)\s*|[一二三四五六七八九十]{1,3}[、.．]\s*)"
)
_SPACES_RE = re.compile(r"[ \t\u3000]+")
_ZH_PUNCT = "，。、；：！？“”（）《》"
_ZH_SPACE_RE = re.compile(f"(?<=[{CJK_RANGES}{_ZH_PUNCT}])[ \t\u3000]+(?=[{CJK_RANGES}{_ZH_PUNCT}])")
_QUOTE_PAIRS = {'"': '"', "“": "”", "「": "」", "'": "'", "‘": "’"}


def _header_re(headers: Sequence[str], numbered: bool) -> "re.Pattern[str]":
    number = r"\s*\d*" if numbered else ""
    return re.compile(r"^\s*(?:" + "|".join(map(re.escape, headers)) + r")" + number + r"\s*[:：]\s*", re.I)


def _echo_re(fields: Sequence[str]) -> "re.Pattern[str]":
    return re.compile(r"(?:^|(?<=[\s。！？.!?”」』)）]))(?:" + "|".join(map(re.escape, fields)) + r")\s*[:：].*$", re.I)


class ReplyCleaner:
    """The one cleaner of LLM replies. Every reply loses code fences, Markdown
    emphasis, headings, quote and list markers and its answer header; the
    rest depends on the kind of reply.

    headers (Sequence[str]): answer headers, removed with their colon.
    numbered_headers (bool): headers may carry a number ("句子2：").
    echo_fields (Sequence[str]): prompt fields removed with the rest of their line.
    unquote (bool): remove quotes that enclose a whole line.
    tidy_spaces (bool): collapse runs of spaces and, for Chinese, drop the
        spaces between Chinese characters.
    """

    def __init__(
        self,
        headers: Sequence[str],
        *,
        numbered_headers: bool = False,
        echo_fields: Sequence[str] = (),
        unquote: bool = False,
        tidy_spaces: bool = False,
    ):
        self.header_re = _header_re(headers, numbered_headers)
        self.echo_re = _echo_re(echo_fields) if echo_fields else None
        self.unquote = unquote
        self.tidy_spaces = tidy_spaces

    def clean_line(self, line: str, lang: str = "zh") -> str:
        """One line without markup, headers, echoed fields (and enclosing quotes)."""
        line = _INLINE_MARKUP_RE.sub("", line)
        line = _LINE_MARKUP_RE.sub("", line)
        line = self.header_re.sub("", line)
        if self.echo_re is not None:  # a header may follow what the echoed field left
            line = self.header_re.sub("", self.echo_re.sub("", line))
        line = line.strip()
        if self.tidy_spaces:
            line = _SPACES_RE.sub(" ", line)
            if lang == "zh":
                line = _ZH_SPACE_RE.sub("", line)
        if self.unquote:
            line = _unquote(line)
        return line

    def clean_lines(self, reply: str, lang: str = "zh") -> List[str]:
        """The non-empty cleaned lines of a reply, code fences left out."""
        text = unicodedata.normalize("NFC", reply or "").replace("\r\n", "\n").replace("\r", "\n")
        text = text.replace("\ufffd", "")  # half of a multi-byte character cut at the token limit
        lines = (self.clean_line(line, lang) for line in text.split("\n") if not _FENCE_RE.match(line))
        return [line for line in lines if line]


def _unquote(line: str) -> str:
    if len(line) >= 2 and line[0] in _QUOTE_PAIRS and line[-1] == _QUOTE_PAIRS[line[0]]:
        inner = line[1:-1]
        if line[0] not in inner and _QUOTE_PAIRS[line[0]] not in inner:
            return inner.strip()
    return line


#: Explanations (knowfree synthesize): prose over several lines.
EXPLANATION_CLEANER = ReplyCleaner(EXPLANATION_HEADERS, echo_fields=EXPLANATION_ECHO_FIELDS, tidy_spaces=True)
#: Generated sentences and paraphrases: one sentence a line, maybe quoted.
SENTENCE_CLEANER = ReplyCleaner(SENTENCE_HEADERS, numbered_headers=True, unquote=True)


def clean_generation(text: str, lang: str = "zh") -> str:
    """Strip what is not generated prose from an explanation.

    Removes code fences, Markdown emphasis, headings, quote and list markers,
    answer headers ("续写与讲解：", "Answer:"), and echoed prompt fields
    ("实体：[...]", "Sample: ...") up to the end of their line; collapses
    spaces (and, for Chinese, removes spaces between Chinese characters).
    Line breaks are kept: they end sentences.

    text (str): the reply.
    lang (str): "zh", "en", ...
    RETURNS (str): the cleaned text (may be empty).
    """
    return "\n".join(EXPLANATION_CLEANER.clean_lines(text, lang))


def answer_lines(reply: str) -> List[str]:
    """Non-empty lines of a one-sentence reply, without code fences, markup,
    headers, list markers and enclosing quotes."""
    return SENTENCE_CLEANER.clean_lines(reply)


def strip_answer(line: str) -> str:
    """Remove markup, list markers, an answer header and enclosing quotes from one line."""
    return SENTENCE_CLEANER.clean_line(line)


# ----------------------------------------------------------------------------- sentences

_ZH_TERMINATORS = "。！？!?…"
#: Closing quotes and brackets: they stay with the sentence they end.
CLOSERS = "”’」』）)]】》\"'"
_EN_ABBREVIATIONS = {
    "mr",
    "mrs",
    "ms",
    "dr",
    "prof",
    "st",
    "sr",
    "jr",
    "vs",
    "etc",
    "e.g",
    "i.e",
    "inc",
    "ltd",
    "co",
    "no",
    "fig",
    "u.s",
    "u.k",
    "dept",
    "est",
    "approx",
    "mt",
    "jan",
    "feb",
    "mar",
    "apr",
    "jun",
    "jul",
    "aug",
    "sep",
    "sept",
    "oct",
    "nov",
    "dec",
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
            is_end = not (prev_digit and next_char.isdigit()) and (
                not next_char or next_char.isspace() or bool(CJK_CHAR_RE.match(next_char))
            )
        if is_end:
            j = i + 1
            while j < n and (line[j] in _ZH_TERMINATORS or line[j] == "."):
                j += 1
            while j < n and line[j] in CLOSERS:
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
        if not (following.isupper() or following.isdigit() or following in "\"'“‘([" or CJK_CHAR_RE.match(following)):
            continue
        before = line[start : match.start()].split()
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


# ----------------------------------------------------------------------------- checks


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
        return sum(1 for ch in letters if CJK_CHAR_RE.match(ch)) / len(letters)
    if lang in ("en", "de", "fr", "es", "it", "nl", "pt"):
        return sum(1 for ch in letters if ord(ch) < 0x250) / len(letters)
    return 1.0


def normalize_for_compare(text: str) -> str:
    """Case-, width-, space- and punctuation-insensitive form of ``text``."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return "".join(ch for ch in text if ch.isalnum())


def text_similarity(a: str, b: str) -> float:
    """difflib ratio of two texts already in :func:`normalize_for_compare` form."""
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


def is_copy(candidate: str, source: str, similarity: float = 0.9) -> bool:
    """Whether ``candidate`` merely repeats (part of) ``source``.

    True when, ignoring case, spaces and punctuation, it equals the source,
    is contained in it, or is at least ``similarity`` similar to it
    (difflib ratio).
    """
    cand, src = normalize_for_compare(candidate), normalize_for_compare(source)
    if not cand or not src:
        return False
    return cand in src or text_similarity(cand, src) >= similarity
