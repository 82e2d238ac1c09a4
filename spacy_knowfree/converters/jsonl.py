"""KnowFREE JSONL: one sentence a line.

``{"text": ["科", "技"], "label": ["B-ORG", "E-ORG"], "entities": [{"start": 0,
"end": 2, "entity": "ORG", "text": ["科", "技"]}]}``, ends exclusive by default.
Entities whose label is not a target label (per the labels file, the
reference ``.json`` with ``is_target`` flags or a ``.txt`` list of targets)
are extension spans and go to ``doc.spans["knowfree_ext"]``. Nested entities
are kept (in ``doc.spans`` only). A plain variant ``{"text": "a string",
"spans": [{"start", "end", "label"}]}`` with character offsets is read too.
"""

import json
import re
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Set, Tuple, Union

import srsly
from spacy.tokens import Doc
from spacy.vocab import Vocab

from ..errors import Errors, Warnings
from .docs import (
    EXTENSION_SPANS_KEY,
    TARGET_SPANS_KEY,
    PathLike,
    ReadStats,
    SpanTuple,
    doc_span_tuples,
    iter_lines,
    make_doc,
    merge_stats,
    spans_overlap,
    warn_repairs,
)
from .tags import REPAIR_END, REPAIR_START, spans_to_tags, tags_to_spans

_LABEL_KEYS = ("entity", "label", "type")
_LATIN = re.compile(r"[A-Za-z]")


def read_labels_file(path: PathLike) -> Tuple[List[str], List[str]]:
    """Read a KnowFREE labels file.

    ``.json``/``.jsonl``: ``{"LABEL": {"idx": 0, "count": -1, "is_target":
    true}, ...}`` (a missing ``is_target`` means target); ``.txt``: one target
    label a line. ``O`` is skipped.
    RETURNS (Tuple[List[str], List[str]]): target labels, extension labels.
    """
    path = Path(path)
    if path.suffix == ".txt":
        labels = [line.strip() for _, line in iter_lines(path)]
        return [label for label in labels if label and label != "O"], []
    text = "\n".join(line for _, line in iter_lines(path))
    try:
        data = json.loads(text)
    except ValueError:
        try:
            data = {}
            for line in text.splitlines():
                if line.strip():
                    data.update(json.loads(line))
        except (ValueError, TypeError, AttributeError) as err:
            raise ValueError(Errors.KF114.format(path=path, detail=str(err))) from None
    if not isinstance(data, dict):
        raise ValueError(Errors.KF114.format(path=path, detail=f"found a {type(data).__name__}"))
    targets: List[str] = []
    extensions: List[str] = []
    for label, info in data.items():
        if label == "O":
            continue
        if not isinstance(info, dict):
            raise ValueError(Errors.KF114.format(path=path, detail=f"entry {label!r} is not an object"))
        (targets if info.get("is_target", True) else extensions).append(label)
    return targets, extensions


def write_labels_file(
    path: PathLike,
    targets: Iterable[str],
    extensions: Iterable[str] = (),
    counts: Optional[Dict[str, int]] = None,
) -> None:
    """Write a KnowFREE ``.json`` labels file (``O`` first, then the targets,
    then the extension labels with ``is_target: false``); a ``.txt`` path
    gets the target list only. counts: per-label counts (``-1`` if absent)."""
    path = Path(path)
    targets = list(targets)
    if path.suffix == ".txt":
        path.write_text("\n".join(["O", *targets]) + "\n", encoding="utf8")
        return
    counts = counts or {}
    data: Dict[str, Dict[str, Any]] = {}
    for label, is_target in [("O", True)] + [(t, True) for t in targets] + [(e, False) for e in extensions]:
        if label not in data:
            data[label] = {"idx": len(data), "count": counts.get(label, -1), "is_target": is_target}
    srsly.write_json(path, data)


def read_jsonl(
    path: PathLike,
    vocab: Optional[Vocab] = None,
    *,
    labels: Union[None, PathLike, Iterable[str]] = None,
    end_inclusive: bool = False,
    spaces: Optional[bool] = None,
    spans_key: str = TARGET_SPANS_KEY,
    extension_key: str = EXTENSION_SPANS_KEY,
    set_ents: bool = True,
    stats: Optional[ReadStats] = None,
    warn: bool = True,
) -> List[Doc]:
    """Read a KnowFREE JSONL file into one Doc per line.

    path (PathLike): the file.
    vocab (Optional[Vocab]): vocab of the Docs (a new one if None).
    labels (None | PathLike | Iterable[str]): a labels file (see
        :func:`read_labels_file`) or the target labels. Entities with other
        labels become extension spans, and every Doc gets a (maybe empty)
        ``doc.spans[extension_key]``. None: every entity is a target.
    end_inclusive (bool): the ``end`` offsets point at the last token.
    spaces (Optional[bool]): whether tokens are separated by spaces; None:
        yes when some token of the line has 2+ characters and a Latin letter
        (tokenized English), no otherwise (one token per character).
    spans_key (str): key for the target spans. extension_key (str): key for
        the extension spans.
    set_ents (bool): also set ``doc.ents`` when the target spans do not overlap.
    stats (Optional[ReadStats]): counts are added to it.
    warn (bool): print a wasabi warning for repaired ``label`` tag sequences.
    RETURNS (List[Doc]): the Docs.
    """
    if spans_key == extension_key:
        raise ValueError(Errors.KF121.format(key=spans_key))
    targets: Optional[Set[str]] = None
    if labels is not None:
        if isinstance(labels, (str, Path)):
            targets = set(read_labels_file(labels)[0])
        else:
            targets = set(labels)
    vocab = vocab if vocab is not None else Vocab()
    local = ReadStats()
    docs = []
    for line_no, line in iter_lines(path):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as err:
            raise ValueError(Errors.KF108.format(path=path, line=line_no, err=err)) from None
        doc = record_to_doc(
            record,
            vocab,
            targets=targets,
            end_inclusive=end_inclusive,
            spaces=spaces,
            spans_key=spans_key,
            extension_key=extension_key,
            set_ents=set_ents,
            where=(str(path), line_no),
            stats=local,
        )
        local.add_doc(doc, spans_key, extension_key)
        docs.append(doc)
    if warn:
        warn_repairs(local, {REPAIR_START: Warnings.KW101, REPAIR_END: Warnings.KW102})
    merge_stats(stats, local)
    return docs


def record_to_doc(
    record: Any,
    vocab: Vocab,
    *,
    targets: Optional[Set[str]] = None,
    end_inclusive: bool = False,
    spaces: Optional[bool] = None,
    spans_key: str = TARGET_SPANS_KEY,
    extension_key: str = EXTENSION_SPANS_KEY,
    set_ents: bool = True,
    where: Tuple[str, int] = ("<record>", 1),
    stats: Optional[ReadStats] = None,
) -> Doc:
    """One JSONL record (a parsed line) as a Doc; see :func:`read_jsonl`.

    where (Tuple[str, int]): file and line named in error messages.
    """
    path, line = where
    text = record.get("text") if isinstance(record, dict) else None
    if isinstance(text, str):
        tokens = list(text)
        use_spaces = False
    elif isinstance(text, list) and all(isinstance(t, str) and t for t in text):
        tokens = text
        use_spaces = spaces if spaces is not None else _looks_spaced(tokens)
    else:
        got = type(record).__name__ if not isinstance(record, dict) else f"'text' = {text!r:.60}"
        raise ValueError(Errors.KF109.format(path=path, line=line, got=got))
    entities = record.get("entities", record.get("spans"))
    if entities is None and record.get("label") is not None:
        spans = _spans_from_tags(record["label"], tokens, path, line, stats)
    else:
        spans = [_entity_span(entity, i, tokens, end_inclusive, path, line) for i, entity in enumerate(entities or [])]
    if targets is None:
        return make_doc(vocab, tokens, spans, spaces=use_spaces, spans_key=spans_key, set_ents=set_ents)
    return make_doc(
        vocab,
        tokens,
        [s for s in spans if s[2] in targets],
        spaces=use_spaces,
        spans_key=spans_key,
        extension_spans=[s for s in spans if s[2] not in targets],
        extension_key=extension_key,
        set_ents=set_ents,
    )


def _looks_spaced(tokens: Sequence[str]) -> bool:
    return any(len(token) > 1 and _LATIN.search(token) for token in tokens)


def _spans_from_tags(tags: Any, tokens: List[str], path: str, line: int, stats: Optional[ReadStats]) -> List[SpanTuple]:
    if not isinstance(tags, list) or len(tags) != len(tokens):
        n = len(tags) if isinstance(tags, list) else type(tags).__name__
        raise ValueError(Errors.KF113.format(path=path, line=line, got=n, n=len(tokens)))
    spans, repairs = tags_to_spans(tags, where=f"{path}:{line}, 'label'")
    if stats is not None:
        for _, kind in repairs:
            stats.add_repair(kind, path, line)
    return spans


def _entity_span(entity: Any, index: int, tokens: List[str], end_inclusive: bool, path: str, line: int) -> SpanTuple:
    if not isinstance(entity, dict):
        raise ValueError(Errors.KF110.format(path=path, line=line, index=index, entity=entity))
    label = next((entity[k] for k in _LABEL_KEYS if k in entity), None)
    start, end = entity.get("start"), entity.get("end")
    if not (
        isinstance(label, str)
        and label
        and isinstance(start, int)
        and isinstance(end, int)
        and not isinstance(start, bool)
        and not isinstance(end, bool)
    ):
        raise ValueError(Errors.KF110.format(path=path, line=line, index=index, entity=entity))
    stop = end + 1 if end_inclusive else end
    other_stop = end if end_inclusive else end + 1
    other_flag = "end_inclusive=False (no --end-inclusive)" if end_inclusive else "end_inclusive=True (--end-inclusive)"
    n = len(tokens)
    where = {"path": path, "line": line, "label": label, "start": start, "end": end}
    if not 0 <= start < stop <= n:
        hint = ""
        if 0 <= start < other_stop <= n:
            hint = f" The offsets fit the other end convention: read the file with {other_flag}."
        convention = "inclusive" if end_inclusive else "exclusive"
        raise ValueError(Errors.KF111.format(**where, n=n, convention=convention, hint=hint))
    if "text" in entity and not _same_text(entity["text"], tokens[start:stop]):
        hint = ""
        if _same_text(entity["text"], tokens[start:other_stop]):
            hint = f" The text matches the other end convention: read the file with {other_flag}."
        raise ValueError(Errors.KF112.format(**where, got=tokens[start:stop], expected=entity["text"], hint=hint))
    return (start, stop, label)


def _same_text(expected: Any, tokens: List[str]) -> bool:
    if isinstance(expected, str):
        return expected == "".join(tokens)
    return expected == tokens


def doc_to_record(
    doc: Doc,
    *,
    spans_key: str = TARGET_SPANS_KEY,
    extension_key: str = EXTENSION_SPANS_KEY,
    include_extension: bool = True,
    end_inclusive: bool = False,
    with_tags: bool = True,
) -> Dict[str, Any]:
    """A Doc as a KnowFREE JSONL record.

    include_extension (bool): also write ``doc.spans[extension_key]`` as
        entities (after the targets).
    end_inclusive (bool): write ``end`` as the index of the last token.
    with_tags (bool): add the BIOES ``label`` list of the target spans (left
        out when they overlap, since tags cannot express nesting).
    RETURNS (Dict[str, Any]): ``{"text", ["label"], "entities"}``.
    """
    tokens = [token.text for token in doc]
    targets = doc_span_tuples(doc, spans_key)
    spans = targets + (doc_span_tuples(doc, extension_key) if include_extension else [])
    record: Dict[str, Any] = {"text": tokens}
    if with_tags and not spans_overlap(targets):
        record["label"] = spans_to_tags(len(tokens), targets, "bioes")
    record["entities"] = [
        {"start": s, "end": e - 1 if end_inclusive else e, "entity": label, "text": tokens[s:e]}
        for s, e, label in spans
    ]
    return record


def write_jsonl(
    path: PathLike,
    docs: Iterable[Doc],
    *,
    spans_key: str = TARGET_SPANS_KEY,
    extension_key: str = EXTENSION_SPANS_KEY,
    include_extension: bool = True,
    end_inclusive: bool = False,
    with_tags: bool = True,
) -> int:
    """Write Docs as KnowFREE JSONL (see :func:`doc_to_record`).
    RETURNS (int): the number of lines written."""
    n = 0
    with Path(path).open("w", encoding="utf8") as file_:
        for doc in docs:
            record = doc_to_record(
                doc,
                spans_key=spans_key,
                extension_key=extension_key,
                include_extension=include_extension,
                end_inclusive=end_inclusive,
                with_tags=with_tags,
            )
            file_.write(json.dumps(record, ensure_ascii=False) + "\n")
            n += 1
    return n
