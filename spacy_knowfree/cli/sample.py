"""``knowfree sample``: K-shot training subsets of a ``.spacy`` DocBin."""

from enum import Enum
from pathlib import Path
from typing import Any, Dict, List, Optional

import srsly
import typer
from wasabi import msg

from ..converters import TARGET_SPANS_KEY
from ..docbin_io import read_docbin, write_docbin
from ..sampling import kshot_indices, label_counts, nway_kshot_indices
from ._app import app
from ._options import existing_file_argument


class Mode(str, Enum):
    sentences = "sentences"
    nway = "nway"


@app.command("sample")
def sample_cli(
    input_path: Path = existing_file_argument("The pool, a .spacy DocBin."),
    output_dir: Path = typer.Argument(..., file_okay=False, help="Folder for the subsets and sample.json."),
    ks: List[int] = typer.Option(
        ...,
        "--k",
        help="K (repeat the option for several K): sentences per subset, or instances per label in nway mode.",
    ),
    seed: int = typer.Option(0, "--seed", help="Random seed (recorded in sample.json)."),
    mode: Mode = typer.Option(
        Mode.sentences,
        "--mode",
        help="sentences: nested K-sentence subsets (kK.spacy); nway: greedy n-way k-shot (nway_kK.spacy).",
    ),
    spans_key: str = typer.Option(TARGET_SPANS_KEY, "--spans-key", help="nway: doc.spans key of the labelled spans."),
    labels: Optional[List[str]] = typer.Option(
        None, "--label", help="nway: a label to cover (repeatable; default all labels of the pool)."
    ),
) -> None:
    """Draw reproducible low-resource subsets of a DocBin. In sentences mode
    the subsets are nested (250 ⊂ 500 ⊂ 1000); in nway mode every label gets
    at least K instances (Yang & Katiyar 2020 greedy sampling)."""
    try:
        docs = read_docbin(input_path)
        if mode == Mode.sentences:
            subsets = {f"k{k}": idx for k, idx in kshot_indices(len(docs), ks, seed).items()}
        else:
            subsets = {
                f"nway_k{k}": nway_kshot_indices(docs, k, spans_key=spans_key, labels=labels, seed=seed)
                for k in sorted(set(ks))
            }
    except ValueError as err:
        msg.fail(str(err), exits=1)
    output_dir.mkdir(parents=True, exist_ok=True)
    meta: Dict[str, Any] = {
        "input": str(input_path),
        "pool_size": len(docs),
        "mode": mode.value,
        "seed": seed,
        "spans_key": spans_key,
        "labels": sorted(labels) if labels else None,
        "subsets": {},
    }
    rows = []
    for name, idx in subsets.items():
        subset = [docs[i] for i in idx]
        path = output_dir / f"{name}.spacy"
        write_docbin(subset, path)
        counts = label_counts(subset, spans_key)
        meta["subsets"][name] = {
            "file": path.name,
            "docs": len(idx),
            "spans": dict(sorted(counts.items())),
            "indices": idx,
        }
        least = min(counts.items(), key=lambda kv: (kv[1], kv[0])) if counts else ("-", 0)
        rows.append((name, len(idx), sum(len(doc) for doc in subset), sum(counts.values()), f"{least[0]} ({least[1]})"))
    srsly.write_json(output_dir / "sample.json", meta)
    msg.good(f"Wrote {len(subsets)} subset(s) of {input_path} ({len(docs)} docs, seed {seed}) to {output_dir}")
    msg.table(rows, header=("subset", "docs", "tokens", "spans", "rarest label"), divider=True)
