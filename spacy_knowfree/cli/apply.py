"""``knowfree apply``: batch inference of a trained pipeline over many files,
on this machine (``--engine local``) or on Ray Data actors (``--engine ray``)."""

from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from wasabi import msg

from ..constants import TARGET_SPANS_KEY
from ..scaling.apply import ApplySummary, apply_model
from ..scaling.inputs import MANIFEST_NAME, ReadOptions
from ._app import app


class Engine(str, Enum):
    local = "local"
    ray = "ray"


class OutputFormat(str, Enum):
    spacy = "spacy"
    jsonl = "jsonl"


@app.command("apply")
def apply_cli(
    model: str = typer.Argument(
        ..., metavar="MODEL", help="Trained pipeline: a directory (e.g. training/model-best) or a package name."
    ),
    input_spec: str = typer.Argument(
        ...,
        metavar="INPUT",
        help="A .txt (one document a line), .jsonl/.json (a text field) or .spacy file, a directory of such files, or a quoted glob ('corpus/*.txt').",
    ),
    output: Path = typer.Argument(..., metavar="OUTPUT", help="Directory of the output shards (created if missing)."),
    engine: Engine = typer.Option(
        Engine.local,
        "--engine",
        help='local: nlp.pipe on this machine; ray: Ray Data actors, each with its own pipeline (pip install "spacy-knowfree\\[ray]").',
    ),
    fmt: OutputFormat = typer.Option(
        OutputFormat.spacy,
        "--format",
        "-f",
        help="spacy: DocBin shards; jsonl: KnowFREE JSONL shards with each span's score.",
    ),
    shard_size: int = typer.Option(
        1000, "--shard-size", help="Documents per output shard; a rerun skips the shards already written."
    ),
    batch_size: int = typer.Option(64, "--batch-size", help="Documents per nlp.pipe batch (both engines)."),
    n_process: int = typer.Option(1, "--n-process", help="local: processes of nlp.pipe."),
    threads: int = typer.Option(
        1, "--threads", help="Torch threads per process or actor (on Ray: the CPUs each actor reserves)."
    ),
    num_actors: int = typer.Option(1, "--num-actors", help="ray: actors, each holding one loaded pipeline."),
    ray_address: Optional[str] = typer.Option(
        None,
        "--ray-address",
        help="ray: the cluster to use (auto, HOST:6379 or ray://HOST:10001); default: start a local Ray.",
    ),
    gpu: bool = typer.Option(False, "--gpu", help="Run on a GPU: one per actor with --engine ray."),
    spans_key: str = typer.Option(TARGET_SPANS_KEY, "--spans-key", help="jsonl: doc.spans key of the predicted spans."),
    text_field: str = typer.Option("text", "--text-field", help="JSONL inputs: the field holding the text."),
    split: bool = typer.Option(False, "--split-sentences", help="Text inputs: one document per sentence."),
    dedup: bool = typer.Option(
        False, "--dedup/--no-dedup", help="Text inputs: drop exact duplicate documents of a file."
    ),
) -> None:
    """Apply a trained pipeline to text, JSONL or DocBin files and write the
    annotated documents as shards to OUTPUT (DocBin, or JSONL with spans and
    scores), in input order. Each shard is written whole the moment it is
    done, so an interrupted run resumes: run the same command again and the
    finished shards are skipped. Both engines batch the same documents
    together, so they give the same spans and scores."""
    msg.info(f"Applying {model} to {input_spec} ({engine.value} engine) -> {output}")
    try:
        summary = apply_model(
            model,
            input_spec,
            output,
            engine=engine.value,
            fmt=fmt.value,
            shard_size=shard_size,
            batch_size=batch_size,
            n_process=n_process,
            threads=threads,
            spans_key=spans_key,
            read_options=ReadOptions(text_field=text_field, split_sentences=split, dedup=dedup),
            num_actors=num_actors,
            gpu=gpu,
            ray_address=ray_address,
        )
    except (ValueError, ImportError, RuntimeError) as err:
        msg.fail(str(err), exits=1)
    print_apply_summary(summary, output)


def print_apply_summary(summary: ApplySummary, output: Path) -> None:
    """Print shards written and skipped, documents, characters and chars/s."""
    msg.good(f"Wrote {summary.shards_written} shard(s) to {output} ({summary.shards_skipped} already written, skipped)")
    rows = [
        ("engine", summary.engine),
        ("input files", len(summary.files)),
        ("docs", summary.docs),
        ("chars", summary.chars),
        ("time", f"{summary.seconds:.1f}s"),
        ("chars/s", f"{summary.chars_per_s:,.0f}"),
    ]
    msg.table(rows, divider=False)
    msg.text(f"The run's settings and inputs are in {output / MANIFEST_NAME}.")
