"""Input files of ``knowfree apply``: finding them, reading them, cutting them
into shards, and the manifest that lets a rerun skip finished shards.

An input is a file, a directory (every ``.txt``, ``.jsonl``, ``.json`` and
``.spacy`` file under it) or a glob. Text and JSONL files are read with
:func:`spacy_knowfree.converters.read_text` (the reader of ``knowfree convert
--format text``) into strings that the applied pipeline tokenizes itself;
DocBins are read with :mod:`spacy_knowfree.docbin_io` into Docs whose tokens
are kept. Each file is cut into shards of ``shard_size`` documents in file
order; a shard is the unit of output and of resumption.
"""

import glob
import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Union

from spacy.tokens import Doc
from spacy.vocab import Vocab

from ..converters import read_text
from ..docbin_io import read_docbin
from ..errors import Errors

PathLike = Union[str, Path]
#: file suffix -> how the file is read
INPUT_KINDS: Dict[str, str] = {".txt": "text", ".jsonl": "jsonl", ".json": "jsonl", ".spacy": "docbin"}
MANIFEST_NAME = "knowfree_apply.json"
Record = Union[str, Doc]


@dataclass
class ReadOptions:
    """How text and JSONL inputs become documents (see :func:`read_text`).

    text_field (str): JSONL key of the document text.
    split_sentences (bool): one document per sentence.
    dedup (bool): drop exact duplicate documents within a file.
    """

    text_field: str = "text"
    split_sentences: bool = False
    dedup: bool = False


@dataclass(frozen=True)
class Shard:
    """Documents ``start:stop`` of input ``source`` (number ``index`` of the
    inputs), written to the output file ``name`` + the format's suffix."""

    name: str
    source: Path
    index: int
    start: int
    stop: int

    @property
    def size(self) -> int:
        return self.stop - self.start


def input_kind(path: Path) -> str:
    """``"docbin"``, ``"jsonl"`` or ``"text"`` (any other suffix: text lines)."""
    return INPUT_KINDS.get(path.suffix.lower(), "text")


def find_inputs(spec: PathLike) -> List[Path]:
    """The input files named by ``spec``: the file itself, the ``.txt``,
    ``.jsonl``, ``.json`` and ``.spacy`` files under a directory (recursively,
    hidden ones left out), or the files matching a glob; sorted by path.
    RAISES ValueError: KF700 when nothing matches."""
    text = str(spec)
    path = Path(text)
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(
            p
            for p in path.rglob("*")
            if p.is_file()
            and p.suffix.lower() in INPUT_KINDS
            and not any(part.startswith(".") for part in p.relative_to(path).parts)
        )
        if not files:
            kinds = ", ".join(sorted(INPUT_KINDS))
            raise ValueError(Errors.KF700.format(input=spec, detail=f"the directory holds no {kinds} file"))
        return files
    if glob.has_magic(text):
        files = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
        if not files:
            raise ValueError(Errors.KF700.format(input=spec, detail="no file matches the glob"))
        return files
    raise ValueError(Errors.KF700.format(input=spec, detail="no such file or directory"))


def read_records(path: Path, options: ReadOptions, vocab: Optional[Vocab] = None) -> List[Record]:
    """The documents of one input file in order: strings for text and JSONL
    files, Docs (sharing ``vocab``) for DocBins.
    RAISES ValueError: the KF message of the reader (encoding, binary data,
    missing text field, damaged or empty DocBin)."""
    kind = input_kind(path)
    if kind == "docbin":
        return list(read_docbin(path, vocab))
    docs, _ = read_text(
        path,
        None,
        text_format="jsonl" if kind == "jsonl" else "auto",
        text_field=options.text_field,
        split=options.split_sentences,
        lang="xx",
        dedup=options.dedup,
    )
    return [doc.text for doc in docs]


def plan_shards(path: Path, index: int, n_docs: int, shard_size: int) -> List[Shard]:
    """The shards of input number ``index`` holding ``n_docs`` documents."""
    stem = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in path.stem) or "input"
    n_shards = max(1, math.ceil(n_docs / shard_size))
    return [
        Shard(f"{index:05d}-{stem}-{i:05d}", path, index, i * shard_size, min(n_docs, (i + 1) * shard_size))
        for i in range(n_shards)
    ]


def chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    """Consecutive slices of ``size`` items (the last may be shorter)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass
class InputState:
    """What the manifest knows about one input file; ``docs`` is None until
    the file has been read once."""

    path: str
    bytes: int
    mtime_ns: int
    docs: Optional[int] = None


@dataclass
class Manifest:
    """A JSON file in the output directory (``knowfree_apply.json``) with the
    settings and inputs a run's shards were made from, so that a rerun
    resumes the same plan (and refuses a different one) without reading
    finished inputs. ``settings`` holds what decides which documents land in
    which shard and how they are processed, JSON values only."""

    settings: Dict[str, Any]
    inputs: List[InputState] = field(default_factory=list)
    name: str = MANIFEST_NAME

    @classmethod
    def for_run(cls, settings: Dict[str, Any], files: Sequence[Path], name: str = MANIFEST_NAME) -> "Manifest":
        states = []
        for path in files:
            stat = path.stat()
            states.append(InputState(str(path.resolve()), stat.st_size, stat.st_mtime_ns))
        return cls(dict(settings), states, name)

    def resume(self, output: Path) -> "Manifest":
        """This manifest, with the document counts of the one in ``output``
        when that one was made from the same settings and inputs.
        RAISES ValueError: KF701 naming what differs."""
        path = output / self.name
        if not path.exists():
            return self
        try:
            old = json.loads(path.read_text(encoding="utf8"))
            old_settings, old_inputs = old["settings"], [InputState(**i) for i in old["inputs"]]
        except (ValueError, KeyError, TypeError) as err:
            raise ValueError(
                Errors.KF701.format(output=output, what="manifest", old=f"unreadable ({err})", new=self.name)
            ) from None
        for key in sorted(set(old_settings) | set(self.settings)):
            if old_settings.get(key) != self.settings[key]:
                raise ValueError(
                    Errors.KF701.format(output=output, what=key, old=old_settings.get(key), new=self.settings.get(key))
                )
        old_files = [(i.path, i.bytes, i.mtime_ns) for i in old_inputs]
        new_files = [(i.path, i.bytes, i.mtime_ns) for i in self.inputs]
        if old_files != new_files:
            changed = sorted({f[0] for f in set(old_files) ^ set(new_files)}) or ["the order of the files"]
            raise ValueError(
                Errors.KF701.format(
                    output=output,
                    what="input (files, sizes or modification times)",
                    old=f"{len(old_files)} file(s)",
                    new=f"{len(new_files)} file(s); differing: {', '.join(changed[:3])}",
                )
            )
        for state, old_state in zip(self.inputs, old_inputs):
            state.docs = old_state.docs
        return self

    def save(self, output: Path) -> None:
        """Write the manifest atomically (a killed run never leaves half of it)."""
        output.mkdir(parents=True, exist_ok=True)
        data = {"settings": self.settings, "inputs": [asdict(i) for i in self.inputs]}
        atomic_write_bytes(output / self.name, json.dumps(data, indent=1, ensure_ascii=False).encode("utf8"))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    tmp = path.with_name(path.name + ".partial")
    tmp.write_bytes(data)
    os.replace(tmp, path)
