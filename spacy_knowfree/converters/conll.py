"""Character-per-line CoNLL files with BIO / BIOES / BMES tags.

One token a line, columns separated by a TAB or a space, an empty line between
sentences (Weibo NER: ``CHAR+INDEX<TAB>BIO``; Resume NER: ``CHAR<SPACE>BMES``).
Tags are chunked conlleval-style (see :mod:`.tags`); repairs of ill-formed
sequences are counted and reported, never made silently.
"""

import re
from typing import List, Optional, Tuple

from spacy.tokens import Doc
from spacy.vocab import Vocab

from ..errors import Errors, Warnings
from .docs import (
    TARGET_SPANS_KEY,
    PathLike,
    ReadStats,
    iter_lines,
    make_doc,
    merge_stats,
    warn_repairs,
)
from .tags import REPAIR_END, REPAIR_START, SCHEMES, chunk_tags, detect_scheme, scheme_prefixes, split_tag

TOKEN_FORMATS = ("plain", "char-index")
_CHAR_INDEX = re.compile(r"^(\ufffd+|.)([0-9]+)$", re.DOTALL)

# one sentence: (line number, token, tag) per token line
_Sentence = List[Tuple[int, str, str]]


def parse_char_index(token: str) -> Optional[str]:
    """The character of a Weibo ``CHAR+INDEX`` token: ``"科0"`` -> ``"科"``,
    ``"81"`` -> ``"8"``, ``"e12"`` -> ``"e"``; a run of U+FFFD keeps its
    length (``"\\ufffd\\ufffd0"`` -> ``"\\ufffd\\ufffd"``). Only the index after
    the first character is removed, so digit characters are kept.
    RETURNS (Optional[str]): the character, or None if the token has no index.
    """
    match = _CHAR_INDEX.match(token)
    return match.group(1) if match else None


def read_conll(
    path: PathLike,
    vocab: Optional[Vocab] = None,
    *,
    scheme: str = "auto",
    sep: Optional[str] = None,
    token_column: int = 0,
    tag_column: int = -1,
    token_format: str = "plain",
    spans_key: str = TARGET_SPANS_KEY,
    set_ents: bool = True,
    stats: Optional[ReadStats] = None,
    warn: bool = True,
) -> List[Doc]:
    """Read a character-per-line CoNLL file into one Doc per sentence.

    path (PathLike): the file (UTF-8; LF or CRLF).
    vocab (Optional[Vocab]): vocab of the Docs (a new one if None).
    scheme (str): ``"auto"``, ``"bio"``, ``"bioes"`` or ``"bmes"``.
    sep (Optional[str]): column separator; None: TAB if the first token line
        has one, else a single space.
    token_column (int): column of the token. tag_column (int): column of the tag.
    token_format (str): ``"plain"``, or ``"char-index"`` for Weibo's
        ``CHAR+INDEX`` tokens (see :func:`parse_char_index`).
    spans_key (str): key of ``doc.spans`` for the entities.
    set_ents (bool): also set ``doc.ents`` (the spans never overlap here).
    stats (Optional[ReadStats]): counts are added to it.
    warn (bool): print a wasabi warning with the number of repairs.
    RETURNS (List[Doc]): the sentences.
    """
    if token_format not in TOKEN_FORMATS:
        raise ValueError(Errors.KF105.format(what="token format", value=token_format, options=", ".join(TOKEN_FORMATS)))
    if scheme != "auto":
        scheme_prefixes(scheme)
    vocab = vocab if vocab is not None else Vocab()
    sentences = _read_sentences(path, sep, token_column, tag_column)
    pairs = [[split_tag(tag) for _, _, tag in sent] for sent in sentences]
    if scheme == "auto":
        scheme = detect_scheme(p for sent in pairs for p, _ in sent if p) or ""
        if not scheme:
            prefixes = sorted({p for sent in pairs for p, _ in sent if p} - {"O"})
            raise ValueError(Errors.KF104.format(where=path, prefixes=", ".join(prefixes)))
    allowed = scheme_prefixes(scheme)
    local = ReadStats()
    docs = []
    for sent, sent_pairs in zip(sentences, pairs):
        for (line, _, tag), (prefix, _) in zip(sent, sent_pairs):
            if prefix not in allowed:
                raise ValueError(
                    Errors.KF103.format(
                        where=f"{path}:{line}", tag=tag, scheme=scheme, prefixes=", ".join(SCHEMES[scheme])
                    )
                )
        words = [_token(path, line, token, token_format) for line, token, _ in sent]
        spans, repairs = chunk_tags(sent_pairs, scheme)
        for index, kind in repairs:
            local.add_repair(kind, path, sent[index][0])
        doc = make_doc(vocab, words, spans, spans_key=spans_key, set_ents=set_ents)
        local.add_doc(doc, spans_key)
        docs.append(doc)
    if warn:
        warn_repairs(local, {REPAIR_START: Warnings.KW101, REPAIR_END: Warnings.KW102})
    merge_stats(stats, local)
    return docs


def _token(path: PathLike, line: int, token: str, token_format: str) -> str:
    if token_format == "char-index":
        char = parse_char_index(token)
        if char is None:
            raise ValueError(Errors.KF102.format(path=path, line=line, token=token))
        return char
    return token


_KF101_HINT = (
    "Every token line must have as many columns as the first one; check the column separator (--sep) or fix this line."
)


def _read_sentences(path: PathLike, sep: Optional[str], token_column: int, tag_column: int) -> List[_Sentence]:
    sentences: List[_Sentence] = []
    current: _Sentence = []
    n_columns = 0
    for line_no, line in iter_lines(path):
        if not line.strip():
            if current:
                sentences.append(current)
                current = []
            continue
        if line.startswith("-DOCSTART-"):
            continue
        if sep is None:
            sep = "\t" if "\t" in line else " "
        fields = line.split(sep)
        if not n_columns:
            n_columns = len(fields)
            if n_columns < 2:
                raise ValueError(
                    Errors.KF101.format(
                        path=path,
                        line=line_no,
                        expected="2 or more",
                        sep=repr(sep),
                        found=n_columns,
                        text=line,
                        hint=_KF101_HINT,
                    )
                )
            for column in (token_column, tag_column):
                if not -n_columns <= column < n_columns:
                    raise ValueError(Errors.KF123.format(path=path, column=column, n=n_columns))
        if len(fields) != n_columns:
            raise ValueError(
                Errors.KF101.format(
                    path=path,
                    line=line_no,
                    expected=n_columns,
                    sep=repr(sep),
                    found=len(fields),
                    text=line,
                    hint=_KF101_HINT,
                )
            )
        token, tag = fields[token_column], fields[tag_column].strip()
        if not token:
            raise ValueError(Errors.KF107.format(path=path, line=line_no, text=line))
        current.append((line_no, token, tag))
    if current:
        sentences.append(current)
    return sentences
