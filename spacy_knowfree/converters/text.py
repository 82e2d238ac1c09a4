"""Raw (unlabeled) text: one document a line, or JSONL with a ``text`` field.

Documents become Docs tokenized by ``spacy.blank(lang)`` (for ``zh`` the
``char`` segmenter: one token per character, what the packaged configs use),
with no spans. Blank documents and exact duplicates are dropped and counted.
With ``split_sentences`` each document is cut into sentences after 。！？!?
and after ``.`` followed by whitespace (closing quotes and brackets stay with
their sentence); nothing is ever truncated.
"""

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

import spacy
from spacy.language import Language
from spacy.tokens import Doc
from spacy.vocab import Vocab
from tqdm import tqdm

from ..errors import Errors
from .docs import PathLike, iter_lines

TEXT_FORMATS = ("auto", "lines", "jsonl")
JSONL_SUFFIXES = (".jsonl", ".json")

_CLOSERS = "”’\"'）)】」』》〉]}»›"
_SENTENCE_END = re.compile(rf"(?:[。！？!?]+|\.+(?=[{re.escape(_CLOSERS)}]*(?:\s|$)))[{re.escape(_CLOSERS)}]*|\n")
_COMPRESSED = {
    b"\x1f\x8b": "gzip-compressed data: gunzip it first",
    b"PK\x03\x04": "a zip archive: unzip it first",
    b"BZh": "bzip2-compressed data: bunzip2 it first",
    b"\xfd7zXZ\x00": "xz-compressed data: unxz it first",
    b"%PDF": "a PDF file: extract its text first",
}
_HEAD_BYTES = 8192


@dataclass
class TextStats:
    """What :func:`read_text` read and kept.

    ``records``: lines (or JSONL records) read, blank ones included;
    ``empty``: blank documents dropped; ``duplicates``: exact duplicates
    dropped (of the written units: sentences with ``split_sentences``);
    ``docs``, ``chars``, ``tokens``: the Docs kept, their characters and
    tokens; ``longest``: characters of the longest Doc; ``text_format``:
    how the file was read (``"lines"`` or ``"jsonl"``).
    """

    records: int = 0
    empty: int = 0
    duplicates: int = 0
    docs: int = 0
    chars: int = 0
    tokens: int = 0
    longest: int = 0
    text_format: str = "lines"


def split_sentences(text: str) -> List[str]:
    """Cut ``text`` into sentences after 。！？!? (runs of them count as one),
    after ``.`` followed by whitespace or the end, and at line breaks; closing
    quotes and brackets right after the terminator stay with their sentence.
    Sentences are stripped; empty ones are dropped. Joined they give back
    ``text`` without the whitespace between sentences."""
    sentences = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        sentences.append(text[start : match.end()].strip())
        start = match.end()
    sentences.append(text[start:].strip())
    return [sentence for sentence in sentences if sentence]


def detect_text_format(path: PathLike, first_line: Optional[str] = None) -> str:
    """``"jsonl"`` for a ``.jsonl``/``.json`` file or one whose first non-blank
    line (``first_line``) is a JSON object, else ``"lines"``."""
    if Path(path).suffix.lower() in JSONL_SUFFIXES:
        return "jsonl"
    if first_line is not None and first_line.lstrip().startswith("{"):
        try:
            return "jsonl" if isinstance(json.loads(first_line), dict) else "lines"
        except ValueError:
            return "lines"
    return "lines"


def read_text(
    path: PathLike,
    vocab: Optional[Vocab] = None,
    *,
    text_format: str = "auto",
    text_field: str = "text",
    split: bool = False,
    lang: str = "zh",
    dedup: bool = True,
    progress: bool = False,
) -> Tuple[List[Doc], TextStats]:
    """Read raw text into Docs without spans.

    path (PathLike): a UTF-8 file (a leading byte-order mark is skipped).
    vocab (Optional[Vocab]): vocab of the Docs (a new one if None).
    text_format (str): ``"lines"`` (one document a line), ``"jsonl"`` (one
        JSON object a line, the document under ``text_field``) or ``"auto"``
        (see :func:`detect_text_format`).
    text_field (str): JSONL: key of the document's text (a string).
    split (bool): one Doc per sentence (see :func:`split_sentences`).
    lang (str): language of the tokenizer, ``spacy.blank(lang)``; ``zh``
        gives one token per character.
    dedup (bool): drop exact duplicates (compared after stripping).
    progress (bool): show a tqdm progress bar (for 1000+ lines).
    RETURNS (Tuple[List[Doc], TextStats]): the Docs and the counts.
    RAISES ValueError: KF126 (not UTF-8), KF127 (binary), KF128 (no text),
        KF129 (a JSONL line without a string text field), KF105 (format).
    """
    if text_format not in TEXT_FORMATS:
        raise ValueError(Errors.KF105.format(what="text format", value=text_format, options=", ".join(TEXT_FORMATS)))
    path = Path(path)
    nlp = _blank(lang, vocab)
    lines = _read_lines(path, text_field)
    if text_format == "auto":
        text_format = detect_text_format(path, next((line for _, line in lines if line.strip()), None))
    stats = TextStats(records=len(lines), text_format=text_format)
    seen = set()
    docs = []
    records = tqdm(lines, desc="Reading text", unit="line", leave=False, disable=not progress or len(lines) < 1000)
    for line_no, line in records:
        text = _record_text(path, line_no, line, text_field) if text_format == "jsonl" else line
        if text is None or not text.strip():
            stats.empty += 1
            continue
        for unit in split_sentences(text) if split else [text.strip()]:
            if dedup and unit in seen:
                stats.duplicates += 1
                continue
            seen.add(unit)
            doc = nlp.make_doc(unit)
            docs.append(doc)
            stats.docs += 1
            stats.chars += len(unit)
            stats.tokens += len(doc)
            stats.longest = max(stats.longest, len(unit))
    if not docs:
        raise ValueError(
            Errors.KF128.format(
                path=path,
                field=text_field,
                detail=f"all {stats.records} line(s) are blank"
                if text_format == "lines"
                else f"none of the {stats.records} line(s) has a non-empty '{text_field}'",
            )
        )
    return docs, stats


def _blank(lang: str, vocab: Optional[Vocab]) -> Language:
    """``spacy.blank(lang)`` sharing ``vocab`` (KF105 for an unknown language)."""
    try:
        return spacy.blank(lang, vocab=vocab if vocab is not None else True)
    except (ImportError, KeyError, ValueError):
        raise ValueError(
            Errors.KF105.format(what="language", value=lang, options="zh, en or another spaCy language code")
        ) from None


def _read_lines(path: Path, field: str) -> List[Tuple[int, str]]:
    """Every ``(line_number, line)`` of ``path``; KF126/KF127/KF128 for
    undecodable, binary or empty files."""
    if path.stat().st_size == 0:
        raise ValueError(Errors.KF128.format(path=path, field=field, detail="the file is empty (0 bytes)"))
    try:
        lines = list(iter_lines(path))
    except ValueError:
        raise ValueError(_undecodable(path, field)) from None
    for line_no, line in lines:
        if "\x00" in line:
            raise ValueError(Errors.KF127.format(path=path, field=field, detail=f"line {line_no} holds NUL bytes"))
    return lines


def _undecodable(path: Path, field: str) -> str:
    """The KF126 or KF127 message for a file that is not valid UTF-8."""
    with path.open("rb") as file_:
        head = file_.read(_HEAD_BYTES)
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return Errors.KF126.format(
            path=path, line=1, encoding="UTF-16", detail="it starts with a UTF-16 byte-order mark"
        )
    binary = _binary_detail(head)
    if binary is not None:
        return Errors.KF127.format(path=path, field=field, detail=binary)
    with path.open("rb") as file_:
        for line_no, raw in enumerate(file_, start=1):
            try:
                raw.decode("utf8")
            except UnicodeDecodeError as err:
                detail = f"{err.reason} at byte {err.start + 1} of the line: {raw[err.start : err.start + 4]!r}"
                return Errors.KF126.format(path=path, line=line_no, encoding="GB18030", detail=detail)
    return Errors.KF126.format(path=path, line="?", encoding="GB18030", detail="undecodable bytes")


def _binary_detail(head: bytes) -> Optional[str]:
    """Why the first bytes of a file look binary, or None when they may be text."""
    for magic, detail in _COMPRESSED.items():
        if head.startswith(magic):
            return detail
    if b"\x00" in head:
        return "it holds NUL bytes"
    controls = sum(1 for byte in head if byte < 32 and byte not in b"\t\n\r\f\x1b")
    if head and controls / len(head) > 0.1:
        return f"{controls} of its first {len(head)} bytes are control characters"
    return None


def _record_text(path: Path, line_no: int, line: str, field: str) -> Optional[str]:
    """The text of one JSONL line (None for a blank line); KF129 otherwise."""
    if not line.strip():
        return None
    try:
        record = json.loads(line)
    except ValueError as err:
        raise ValueError(
            Errors.KF129.format(path=path, line=line_no, field=field, got=f"invalid JSON ({err})")
        ) from None
    text = record.get(field) if isinstance(record, dict) else None
    if not isinstance(text, str):
        if not isinstance(record, dict):
            got = f"a JSON {type(record).__name__}"
        elif field not in record:
            got = f"an object without it (keys: {', '.join(sorted(record)) or 'none'})"
        else:
            got = f"'{field}' = {text!r:.60} (a {type(text).__name__})"
            if isinstance(text, list):
                got += "; token lists are KnowFREE JSONL: read it with --format jsonl"
        raise ValueError(Errors.KF129.format(path=path, line=line_no, field=field, got=got))
    return text
