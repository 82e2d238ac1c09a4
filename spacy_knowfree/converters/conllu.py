"""CoNLL-U files (Universal Dependencies v1 and v2) as POS-tagging data.

Every word becomes one span, labelled with its UPOS (or XPOS), over the
characters of its FORM; the Doc text is the concatenation of the FORMs, one
token per character. Comment lines, multi-word token lines (``1-2``) and
empty nodes (``1.1``) are skipped.
"""

import re
from typing import List, Optional, Tuple

from spacy.tokens import Doc
from spacy.vocab import Vocab

from ..errors import Errors
from .docs import TARGET_SPANS_KEY, PathLike, ReadStats, iter_lines, make_doc, merge_stats

TAG_FIELDS = {"upos": 3, "xpos": 4}
_RANGE_OR_EMPTY = re.compile(r"^[0-9]+(-[0-9]+|\.[0-9]+)$")

# (line number, FORM, tag, MISC) of each word of a sentence
_Word = Tuple[int, str, str, str]


_KF101_HINT = (
    "A CoNLL-U word line has exactly 10 fields separated by TAB characters "
    "(spaces inside a field do not separate); fix this line, e.g. replace "
    "runs of spaces between fields by one TAB."
)


def read_conllu(
    path: PathLike,
    vocab: Optional[Vocab] = None,
    *,
    tag_field: str = "upos",
    space_after: bool = False,
    spans_key: str = TARGET_SPANS_KEY,
    set_ents: bool = True,
    stats: Optional[ReadStats] = None,
) -> List[Doc]:
    """Read a CoNLL-U file into one character-tokenized Doc per sentence.

    path (PathLike): the file.
    vocab (Optional[Vocab]): vocab of the Docs (a new one if None).
    tag_field (str): ``"upos"`` or ``"xpos"``, the label of the word spans.
    space_after (bool): put a space after words without ``SpaceAfter=No`` in
        MISC (then a UD v2 Doc's text equals its ``# text``); default False:
        the text is the bare concatenation of FORMs (UD v1 files have no MISC).
    spans_key (str): key of ``doc.spans`` for the word spans.
    set_ents (bool): also set ``doc.ents`` to the word spans.
    stats (Optional[ReadStats]): counts are added to it.
    RETURNS (List[Doc]): the sentences.
    """
    if tag_field not in TAG_FIELDS:
        raise ValueError(Errors.KF105.format(what="tag field", value=tag_field, options=", ".join(TAG_FIELDS)))
    column = TAG_FIELDS[tag_field]
    vocab = vocab if vocab is not None else Vocab()
    local = ReadStats()
    docs: List[Doc] = []
    words: List[_Word] = []

    def flush() -> None:
        if words:
            doc = _sentence_doc(vocab, words, space_after, spans_key, set_ents)
            local.add_doc(doc, spans_key)
            docs.append(doc)
            words.clear()

    for line_no, line in iter_lines(path):
        if not line.strip():
            flush()
            continue
        if line.startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) != 10:
            raise ValueError(
                Errors.KF101.format(
                    path=path, line=line_no, expected=10, sep="TAB", found=len(fields), text=line, hint=_KF101_HINT
                )
            )
        word_id, form, tag = fields[0], fields[1], fields[column]
        if not word_id.isdigit():
            if _RANGE_OR_EMPTY.match(word_id):
                continue
            raise ValueError(Errors.KF116.format(path=path, line=line_no, id=word_id))
        if not form:
            raise ValueError(Errors.KF107.format(path=path, line=line_no, text=line))
        if tag in ("", "_"):
            raise ValueError(Errors.KF117.format(path=path, line=line_no, field=tag_field.upper(), form=form))
        words.append((line_no, form, tag, fields[9]))
    flush()
    merge_stats(stats, local)
    return docs


def _sentence_doc(vocab: Vocab, words: List[_Word], space_after: bool, spans_key: str, set_ents: bool) -> Doc:
    chars: List[str] = []
    spaces: List[bool] = []
    spans = []
    for _, form, tag, misc in words:
        spans.append((len(chars), len(chars) + len(form), tag))
        chars.extend(form)
        spaces.extend([False] * len(form))
        if space_after and "SpaceAfter=No" not in misc.split("|"):
            spaces[-1] = True
    if spaces:
        spaces[-1] = False
    return make_doc(vocab, chars, spans, spaces=spaces, spans_key=spans_key, set_ents=set_ents)
