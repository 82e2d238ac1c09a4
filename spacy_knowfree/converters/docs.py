"""Shared helpers of the converters: building character-tokenized Docs with
spans, reading text files line by line, and counting what was read."""

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

from spacy.tokens import Doc, Span
from spacy.vocab import Vocab
from wasabi import msg

from ..constants import EXTENSION_SPANS_KEY, TARGET_SPANS_KEY
from ..errors import Errors

# (start, end, label) in token offsets, end exclusive
SpanTuple = Tuple[int, int, str]
PathLike = Union[str, Path]


@dataclass
class ReadStats:
    """What the readers read: documents, tokens, spans per label, repairs.

    Pass one instance to several reader calls to add up their counts.
    ``repairs`` maps a kind of repair (e.g. ``"chunk start"``) to a count;
    ``repair_lines`` keeps the ``(path, line)`` of every repair.
    """

    docs: int = 0
    tokens: int = 0
    spans: Counter = field(default_factory=Counter)
    extension_spans: Counter = field(default_factory=Counter)
    repairs: Counter = field(default_factory=Counter)
    repair_lines: Dict[str, List[Tuple[str, int]]] = field(default_factory=dict)

    def add_doc(self, doc: Doc, spans_key: str = TARGET_SPANS_KEY, extension_key: str = EXTENSION_SPANS_KEY) -> None:
        """Count one document, its target and its extension spans."""
        self.docs += 1
        self.tokens += len(doc)
        if spans_key in doc.spans:
            self.spans.update(span.label_ for span in doc.spans[spans_key])
        if extension_key in doc.spans:
            self.extension_spans.update(span.label_ for span in doc.spans[extension_key])

    def add_repair(self, kind: str, path: PathLike, line: int) -> None:
        """Record one repair of ill-formed input at ``path``:``line``."""
        self.repairs[kind] += 1
        self.repair_lines.setdefault(kind, []).append((str(path), line))


def warn_repairs(stats: ReadStats, templates: Dict[str, str]) -> None:
    """Print one wasabi warning per kind of repair counted in ``stats``.

    templates (Dict[str, str]): repair kind -> message with the fields
        ``count``, ``path`` and ``line`` (those of the first repair).
    """
    for kind, template in templates.items():
        where = stats.repair_lines.get(kind)
        if where:
            path, line = where[0]
            msg.warn(template.format(count=len(where), path=path, line=line))


def merge_stats(into: Optional[ReadStats], local: ReadStats) -> None:
    """Add the counts of ``local`` to ``into`` (no-op when ``into`` is None)."""
    if into is None:
        return
    into.docs += local.docs
    into.tokens += local.tokens
    into.spans.update(local.spans)
    into.extension_spans.update(local.extension_spans)
    into.repairs.update(local.repairs)
    for kind, lines in local.repair_lines.items():
        into.repair_lines.setdefault(kind, []).extend(lines)


BOM = "\ufeff"


def iter_lines(path: PathLike) -> Iterator[Tuple[int, str]]:
    """Yield ``(line_number, line)`` of a UTF-8 text file, 1-based, with the
    line ending (LF or CRLF) and a leading byte-order mark removed and nothing
    else stripped."""
    path = Path(path)
    with path.open("r", encoding="utf8", newline="\n") as file_:
        try:
            for i, line in enumerate(file_, start=1):
                if i == 1 and line.startswith(BOM):
                    line = line[len(BOM) :]
                if line.endswith("\n"):
                    line = line[:-1]
                if line.endswith("\r"):
                    line = line[:-1]
                yield i, line
        except UnicodeDecodeError as err:
            raise ValueError(Errors.KF100.format(path=path, err=err)) from None


def spans_overlap(spans: Iterable[SpanTuple]) -> bool:
    """Whether any two of the ``(start, end, label)`` spans share a token."""
    last_end = -1
    for start, end, _ in sorted(spans):
        if start < last_end:
            return True
        last_end = max(last_end, end)
    return False


def make_doc(
    vocab: Vocab,
    words: Sequence[str],
    spans: Iterable[SpanTuple] = (),
    *,
    spaces: Union[None, bool, Sequence[bool]] = None,
    spans_key: str = TARGET_SPANS_KEY,
    extension_spans: Optional[Iterable[SpanTuple]] = None,
    extension_key: str = EXTENSION_SPANS_KEY,
    set_ents: bool = True,
) -> Doc:
    """Build a Doc from tokens (one per character for Chinese) and attach spans.

    vocab (Vocab): the vocab of the new Doc.
    words (Sequence[str]): the tokens.
    spans (Iterable[SpanTuple]): target spans ``(start, end, label)`` in token
        offsets, end exclusive; they go to ``doc.spans[spans_key]``.
    spaces (None | bool | Sequence[bool]): ``None`` or ``False``: no space
        after any token (Chinese); ``True``: one space between tokens
        (tokenized English); or one flag per token.
    extension_spans (Optional[Iterable[SpanTuple]]): extension spans for
        ``doc.spans[extension_key]``; ``None`` leaves that group unset (meaning
        "not annotated"), an empty list sets an empty group.
    set_ents (bool): also set ``doc.ents`` from the target spans when they do
        not overlap (so spaCy's ``ner`` can train on the same data).
    RETURNS (Doc): the new Doc.
    """
    words = list(words)
    if spaces is None or spaces is False:
        space_flags = [False] * len(words)
    elif spaces is True:
        space_flags = [True] * len(words)
        if space_flags:
            space_flags[-1] = False
    else:
        space_flags = list(spaces)
    doc = Doc(vocab, words=words, spaces=space_flags)
    targets = list(spans)
    doc.spans[spans_key] = [Span(doc, s, e, label=label) for s, e, label in targets]
    if extension_spans is not None:
        doc.spans[extension_key] = [Span(doc, s, e, label=label) for s, e, label in extension_spans]
    if set_ents and not spans_overlap(targets):
        doc.ents = list(doc.spans[spans_key])
    return doc


def doc_span_tuples(doc: Doc, key: str) -> List[SpanTuple]:
    """The spans of ``doc.spans[key]`` as ``(start, end, label)`` tuples
    (empty when the key is absent)."""
    if key not in doc.spans:
        return []
    return [(span.start, span.end, span.label_) for span in doc.spans[key]]
