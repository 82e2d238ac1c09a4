"""``knowfree filter-extension``: drop extension label families (ablations)."""

from pathlib import Path
from typing import List

import typer
from wasabi import msg

from ..constants import EXTENSION_SPANS_KEY
from ..docbin_io import read_docbin, write_docbin
from ._app import app
from ._options import existing_file_argument, output_file_argument

EXTENSION_KEY = EXTENSION_SPANS_KEY


@app.command("filter-extension")
def filter_extension_cli(
    input_path: Path = existing_file_argument("Fused .spacy DocBin."),
    output_path: Path = output_file_argument("Filtered .spacy DocBin to write."),
    drop_family: List[str] = typer.Option(
        ...,
        "--drop-family",
        help="Family to drop: ENT, POS or SEG (repeatable); spans labelled FAMILY:... are removed.",
    ),
    spans_key: str = typer.Option(EXTENSION_KEY, "--spans-key", help="Span group of the extension spans."),
) -> None:
    """Write a copy of fused docs without the extension spans of some label
    families (e.g. w/o entity: --drop-family ENT; w/o POS: --drop-family POS).
    Target spans, tokens and user data are kept."""
    prefixes = tuple(f"{family.strip().upper().rstrip(':')}:" for family in drop_family)
    try:
        docs = read_docbin(input_path, allow_empty=True)
    except ValueError as err:
        msg.fail(str(err), exits=1)
    kept = dropped = 0
    for doc in docs:
        if spans_key not in doc.spans:
            continue
        group = doc.spans[spans_key]
        spans = [span for span in group if not span.label_.startswith(prefixes)]
        dropped += len(group) - len(spans)
        kept += len(spans)
        doc.spans[spans_key] = spans
    write_docbin(docs, output_path)
    msg.good(
        f"Wrote {len(docs)} docs to {output_path}: dropped {dropped} "
        f"{'/'.join(p[:-1] for p in prefixes)} extension spans, kept {kept}"
    )
