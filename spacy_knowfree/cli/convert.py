"""``knowfree convert``, ``knowfree convert-benchmark`` and ``knowfree to-jsonl``:
data files <-> ``.spacy`` DocBins of character-tokenized Docs with spans."""

from enum import Enum
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import typer
from spacy.vocab import Vocab
from tqdm import tqdm
from wasabi import msg

from ..converters import (
    BENCHMARKS,
    EXTENSION_SPANS_KEY,
    TARGET_SPANS_KEY,
    ReadStats,
    TextStats,
    read_benchmark,
    read_conll,
    read_conllu,
    read_jsonl,
    read_sighan,
    read_text,
    write_jsonl,
    write_labels_file,
)
from ..docbin_io import read_docbin, write_docbin
from ..errors import Errors
from ._app import app
from ._options import (
    existing_dir_argument,
    existing_file_argument,
    existing_file_option,
    output_file_argument,
)


class Format(str, Enum):
    jsonl = "jsonl"
    conll = "conll"
    sighan = "sighan"
    conllu = "conllu"
    text = "text"


class TextFormat(str, Enum):
    auto = "auto"
    lines = "lines"
    jsonl = "jsonl"


_SEPARATORS = {"tab": "\t", "space": " ", "\\t": "\t"}


@app.command("convert")
def convert_cli(
    input_path: Path = existing_file_argument("Input data file."),
    output_path: Path = output_file_argument("Output .spacy DocBin."),
    fmt: Format = typer.Option(..., "--format", "-f", help="Input format."),
    spans_key: str = typer.Option(TARGET_SPANS_KEY, "--spans-key", help="doc.spans key of the target spans."),
    set_ents: bool = typer.Option(True, "--ents/--no-ents", help="Also set doc.ents when spans do not overlap."),
    labels: Optional[Path] = existing_file_option(
        "--labels",
        help="jsonl: labels file (.json with is_target, or .txt of targets); other labels become extension spans.",
    ),
    extension_key: str = typer.Option(
        EXTENSION_SPANS_KEY, "--extension-key", help="jsonl: doc.spans key of the extension spans."
    ),
    end_inclusive: bool = typer.Option(
        False, "--end-inclusive", help="jsonl: 'end' is the last token, not one past it."
    ),
    scheme: str = typer.Option("auto", "--scheme", help="conll: auto, bio, bioes or bmes."),
    sep: Optional[str] = typer.Option(
        None,
        "--sep",
        help="conll: column separator: tab, space or a literal string (default: tab if the first line has one, else space).",
    ),
    token_column: int = typer.Option(0, "--token-column", help="conll: column of the token."),
    tag_column: int = typer.Option(-1, "--tag-column", help="conll: column of the tag."),
    token_format: str = typer.Option(
        "plain", "--token-format", help="conll: plain, or char-index for Weibo's CHAR+INDEX tokens."
    ),
    lines: Optional[str] = typer.Option(
        None, "--lines", help="sighan: keep non-empty lines START-END (1-based, inclusive), e.g. 1-1985."
    ),
    tag_field: str = typer.Option("upos", "--tag-field", help="conllu: upos or xpos."),
    space_after: bool = typer.Option(
        False,
        "--space-after",
        help="conllu: keep spaces marked by MISC SpaceAfter (default: text = concatenated FORMs).",
    ),
    text_format: TextFormat = typer.Option(
        TextFormat.auto,
        "--text-format",
        help="text: lines (one document a line), jsonl (a string field per line) or auto (jsonl for .jsonl/.json or a first line that is a JSON object).",
    ),
    text_field: str = typer.Option("text", "--text-field", help="text: JSONL field holding the document."),
    split: bool = typer.Option(
        False, "--split-sentences", help="text: one doc per sentence (after 。！？!? and '. ', closing quotes kept)."
    ),
    lang: str = typer.Option(
        "zh", "--lang", help="text: tokenizer language, spacy.blank(LANG); zh = one token per character."
    ),
    dedup: bool = typer.Option(True, "--dedup/--no-dedup", help="text: drop exact duplicate docs."),
) -> None:
    """Convert a data file to a .spacy DocBin of character-tokenized Docs with
    spans in doc.spans[SPANS_KEY] (and doc.ents where spans do not overlap);
    --format text reads raw text into Docs without spans."""
    if fmt == Format.text:
        _convert_text(input_path, output_path, text_format.value, text_field, split, lang, dedup)
        return
    stats = ReadStats()
    vocab = Vocab()
    common: Dict[str, Any] = {"spans_key": spans_key, "set_ents": set_ents, "stats": stats}
    msg.info(f"Reading {input_path} ({fmt.value})")
    try:
        if fmt == Format.jsonl:
            docs = read_jsonl(
                input_path, vocab, labels=labels, end_inclusive=end_inclusive, extension_key=extension_key, **common
            )
        elif fmt == Format.conll:
            docs = read_conll(
                input_path,
                vocab,
                scheme=scheme,
                sep=_separator(sep),
                token_column=token_column,
                tag_column=tag_column,
                token_format=token_format,
                **common,
            )
        elif fmt == Format.sighan:
            docs = read_sighan(input_path, vocab, lines=_line_range(lines), **common)
        else:
            docs = read_conllu(input_path, vocab, tag_field=tag_field, space_after=space_after, **common)
    except ValueError as err:
        msg.fail(str(err), exits=1)
    if not docs:
        msg.fail(Errors.KF125.format(path=input_path, format=fmt.value), exits=1)
    write_docbin(docs, output_path)
    print_summary(stats, f"Wrote {len(docs)} docs to {output_path}", spans_key, extension_key)


@app.command("convert-benchmark")
def convert_benchmark_cli(
    name: str = typer.Argument(..., help=f"Benchmark: {', '.join(BENCHMARKS)}."),
    datasets_dir: Path = existing_dir_argument("The shared/datasets folder."),
    output_dir: Path = typer.Argument(..., file_okay=False, help="Folder for SPLIT.spacy files."),
    spans_key: str = typer.Option(TARGET_SPANS_KEY, "--spans-key", help="doc.spans key of the spans."),
    set_ents: bool = typer.Option(True, "--ents/--no-ents", help="Also set doc.ents."),
) -> None:
    """Convert every split of a benchmark (the project's standard splits, e.g.
    MSR/PKU train/dev/test cut from the gold test file) to OUTPUT_DIR/SPLIT.spacy."""
    if name not in BENCHMARKS:
        msg.fail(
            Errors.KF120.format(name=name, split="*", options={n: sorted(b.files) for n, b in BENCHMARKS.items()}),
            exits=1,
        )
    output_dir.mkdir(parents=True, exist_ok=True)
    vocab = Vocab()
    for split in BENCHMARKS[name].files:
        stats = ReadStats()
        try:
            docs = read_benchmark(name, split, datasets_dir, vocab, spans_key=spans_key, set_ents=set_ents, stats=stats)
        except (ValueError, OSError) as err:
            msg.fail(str(err), exits=1)
        path = output_dir / f"{split}.spacy"
        write_docbin(docs, path)
        print_summary(stats, f"{name} {split}: wrote {len(docs)} docs to {path}", spans_key)


@app.command("to-jsonl")
def to_jsonl_cli(
    input_path: Path = existing_file_argument("Input .spacy DocBin."),
    output_path: Path = output_file_argument("Output KnowFREE .jsonl file."),
    spans_key: str = typer.Option(TARGET_SPANS_KEY, "--spans-key", help="doc.spans key of the target spans."),
    extension_key: str = typer.Option(
        EXTENSION_SPANS_KEY, "--extension-key", help="doc.spans key of the extension spans."
    ),
    include_extension: bool = typer.Option(
        True, "--extension/--no-extension", help="Also write the extension spans as entities."
    ),
    end_inclusive: bool = typer.Option(False, "--end-inclusive", help="Write 'end' as the last token of an entity."),
    with_tags: bool = typer.Option(
        True, "--tags/--no-tags", help="Write the BIOES 'label' list (for non-overlapping target spans)."
    ),
    labels_out: Optional[Path] = typer.Option(
        None, "--labels-out", dir_okay=False, help="Also write a labels file (.json with is_target flags, or .txt)."
    ),
) -> None:
    """Write a .spacy DocBin as KnowFREE JSONL (nested spans kept as entities)."""
    try:
        docs = read_docbin(input_path, allow_empty=True)
    except ValueError as err:
        msg.fail(str(err), exits=1)
    stats = ReadStats()
    for doc in docs:
        stats.add_doc(doc, spans_key, extension_key)
    n = write_jsonl(
        output_path,
        tqdm(docs, desc="Writing JSONL", unit="doc", disable=len(docs) < 1000, leave=False),
        spans_key=spans_key,
        extension_key=extension_key,
        include_extension=include_extension,
        end_inclusive=end_inclusive,
        with_tags=with_tags,
    )
    if labels_out is not None:
        extensions = sorted(stats.extension_spans) if include_extension else []
        write_labels_file(labels_out, sorted(stats.spans), extensions, counts={**stats.spans, **stats.extension_spans})
        msg.info(f"Wrote labels to {labels_out}")
    print_summary(stats, f"Wrote {n} docs to {output_path}", spans_key, extension_key)


def print_summary(
    stats: ReadStats,
    title: str,
    spans_key: str = TARGET_SPANS_KEY,
    extension_key: str = EXTENSION_SPANS_KEY,
) -> None:
    """Print docs, tokens, spans per label and repairs."""
    msg.good(title)
    msg.text(f"{stats.docs} docs, {stats.tokens} tokens, {sum(stats.spans.values())} spans in doc.spans['{spans_key}']")
    rows: List[Tuple[str, ...]] = [(label, f"{n}") for label, n in sorted(stats.spans.items())]
    rows += [(f"{label} (ext)", f"{n}") for label, n in sorted(stats.extension_spans.items())]
    if rows:
        msg.table(rows, header=("label", "spans"), divider=True)
    if stats.extension_spans:
        msg.text(f"{sum(stats.extension_spans.values())} extension spans in doc.spans['{extension_key}']")
    for kind, count in sorted(stats.repairs.items()):
        path, line = stats.repair_lines[kind][0]
        msg.warn(f"Repairs: {count} x {kind} (first: {path}:{line})")


def _convert_text(
    input_path: Path,
    output_path: Path,
    text_format: str,
    text_field: str,
    split: bool,
    lang: str,
    dedup: bool,
) -> None:
    """``convert --format text``: read raw text, write the DocBin, print the summary."""
    msg.info(f"Reading {input_path} (text, {text_format})")
    try:
        docs, stats = read_text(
            input_path,
            Vocab(),
            text_format=text_format,
            text_field=text_field,
            split=split,
            lang=lang,
            dedup=dedup,
            progress=True,
        )
    except ValueError as err:
        msg.fail(str(err), exits=1)
    write_docbin(docs, output_path)
    print_text_summary(stats, f"Wrote {len(docs)} docs to {output_path}", split, text_field)


def print_text_summary(stats: TextStats, title: str, split: bool = False, field: str = "text") -> None:
    """Print docs written, dropped empty and duplicate docs, characters, tokens."""
    msg.good(title)
    unit = "sentences" if split else "docs"
    read_as = f"JSONL, the '{field}' field" if stats.text_format == "jsonl" else "one document a line"
    msg.text(f"Read {stats.records} lines ({read_as}).")
    rows = [
        ("docs written" + (" (sentences)" if split else ""), f"{stats.docs}"),
        ("dropped empty", f"{stats.empty}"),
        (f"dropped duplicate {unit}", f"{stats.duplicates}"),
        ("characters", f"{stats.chars}"),
        ("tokens", f"{stats.tokens}"),
        ("longest doc (characters)", f"{stats.longest}"),
    ]
    msg.table(rows, divider=False)
    msg.text("No spans: the docs are unlabeled text.")


def _separator(value: Optional[str]) -> Optional[str]:
    if value is None:
        return None
    return _SEPARATORS.get(value.lower(), value)


def _line_range(value: Optional[str]) -> Optional[Tuple[int, int]]:
    if value is None:
        return None
    start, sep, end = value.partition("-")
    if not (sep and start.strip().isdigit() and end.strip().isdigit()):
        msg.fail(Errors.KF122.format(value=value), exits=1)
    return int(start), int(end)
