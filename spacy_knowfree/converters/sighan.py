"""SIGHAN 2005 word segmentation files (MSR, PKU gold): one sentence a line,
words separated by two (sometimes one or three) spaces, CRLF line endings.

Each word becomes one ``WORD`` span over its characters; B/M/E/S tags can be
derived with :func:`.tags.spans_to_tags` (scheme ``"bmes"``).
"""

from typing import List, Optional, Tuple

from spacy.tokens import Doc
from spacy.vocab import Vocab

from ..errors import Errors
from .docs import TARGET_SPANS_KEY, PathLike, ReadStats, iter_lines, make_doc, merge_stats

WORD_LABEL = "WORD"

# The split of the gold test files used by every benchmark of this project
# (1-based, inclusive, over non-empty lines); see the datasets README.
SIGHAN_SPLITS = {
    "msr": {"train": (1, 1985), "dev": (1986, 2485), "test": (2486, 3985)},
    "pku": {"train": (1, 1000), "dev": (1001, 1244), "test": (1245, 1944)},
}


def read_sighan(
    path: PathLike,
    vocab: Optional[Vocab] = None,
    *,
    lines: Optional[Tuple[int, int]] = None,
    label: str = WORD_LABEL,
    spans_key: str = TARGET_SPANS_KEY,
    set_ents: bool = True,
    stats: Optional[ReadStats] = None,
) -> List[Doc]:
    """Read a segmented SIGHAN file into one character-tokenized Doc per line.

    path (PathLike): the file, e.g. ``msr_test_gold.utf8``.
    vocab (Optional[Vocab]): vocab of the Docs (a new one if None).
    lines (Optional[Tuple[int, int]]): keep only the non-empty lines
        ``start..end`` (1-based, inclusive, counted over non-empty lines), e.g.
        ``(1, 1985)`` for the MSR training pool (see ``SIGHAN_SPLITS``).
    label (str): label of the word spans.
    spans_key (str): key of ``doc.spans`` for the words.
    set_ents (bool): also set ``doc.ents`` to the words.
    stats (Optional[ReadStats]): counts are added to it.
    RETURNS (List[Doc]): one Doc per kept line.
    """
    vocab = vocab if vocab is not None else Vocab()
    texts = [words for words in (line.split() for _, line in iter_lines(path)) if words]
    if lines is not None:
        start, end = lines
        if not 1 <= start <= end <= len(texts):
            raise ValueError(Errors.KF115.format(start=start, end=end, path=path, n=len(texts)))
        texts = texts[start - 1 : end]
    local = ReadStats()
    docs = []
    for words in texts:
        chars: List[str] = []
        spans = []
        for word in words:
            spans.append((len(chars), len(chars) + len(word), label))
            chars.extend(word)
        doc = make_doc(vocab, chars, spans, spans_key=spans_key, set_ents=set_ents)
        local.add_doc(doc, spans_key)
        docs.append(doc)
    merge_stats(stats, local)
    return docs
