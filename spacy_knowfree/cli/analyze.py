"""``knowfree analyze heatmap|tsne|render``: the paper's analysis figures for
a trained pipeline and its data (appendices B and C) and displaCy HTML."""

import random
from enum import Enum
from pathlib import Path
from typing import Dict, List, Optional

import spacy
import srsly
import typer
from wasabi import msg

from ..docbin_io import read_docbin
from ..errors import Errors
from ..pipeline_inputs import load_pipeline
from ._app import command_group
from ._options import existing_dir_argument, existing_file_argument, output_file_argument

analyze_app = command_group(
    "analyze",
    help="Analysis: extension-label logit heatmap, t-SNE of sentence embeddings, displaCy rendering of predictions.",
)


class Positions(str, Enum):
    auto = "auto"
    predicted = "predicted"
    gold = "gold"


def _load_pipeline(path: Path):
    try:
        return load_pipeline(path)
    except ValueError as err:
        msg.fail(str(err), exits=1)


def _read_docs(path: Path, vocab) -> list:
    """Every doc of a non-empty DocBin; exits with KF008 for an empty one."""
    try:
        return read_docbin(path, vocab)
    except ValueError as err:
        msg.fail(str(err), exits=1)


def _parse_sets(values: List[str]) -> Dict[str, Path]:
    """``NAME=PATH`` (or a bare path, named by its stem) for every doc set."""
    sets: Dict[str, Path] = {}
    for value in values:
        name, sep, path_text = value.partition("=")
        path = Path(path_text if sep else value)
        name = name.strip() if sep else path.stem
        if not name:
            raise ValueError(Errors.KF406.format(value=value, problem="the name is empty"))
        if name in sets:
            raise ValueError(Errors.KF406.format(value=value, problem=f"the name {name!r} is used twice"))
        if not path.is_file():
            raise ValueError(Errors.KF406.format(value=value, problem=f"{path} is not a file"))
        sets[name] = path
    return sets


@analyze_app.command("heatmap")
def heatmap_cli(
    model: Path = existing_dir_argument("Trained pipeline directory."),
    data: Path = existing_file_argument("Evaluation .spacy DocBin (e.g. the test split)."),
    output: Path = output_file_argument("Image to write (PNG, or SVG/PDF by suffix)."),
    positions: Positions = typer.Option(
        Positions.auto,
        "--positions",
        help="Average at the predicted target spans (the paper's figure 6) or at the gold spans; "
        "auto: the predicted ones, or the gold ones if the model predicts no span in DATA.",
    ),
    top: int = typer.Option(
        40, "--top", min=1, help="Show the extension labels varying most across the target labels; the JSON keeps all."
    ),
    component: Optional[str] = typer.Option(
        None, "--component", help="Name of the knowfree component (default: the first)."
    ),
) -> None:
    """Heatmap of the mean extension-label logits at each target label's spans
    (paper, appendix C); the numbers go to OUTPUT with a .json suffix."""
    from ..analysis import extension_logit_table, plot_extension_logits

    nlp = _load_pipeline(model)
    docs = _read_docs(data, nlp.vocab)
    try:
        table = extension_logit_table(nlp, docs, component=component, positions=positions.value)
    except ValueError as err:
        msg.fail(str(err), exits=1)
    if positions == Positions.auto and table.positions == "gold":
        msg.warn(f"The model predicts no span in the {len(docs)} docs: the logits are averaged at the gold spans.")
    shown = plot_extension_logits(table, output, top=top)
    json_path = output.with_suffix(".json")
    srsly.write_json(json_path, table.to_dict())
    counts = ", ".join(f"{label} {n}" for label, n in zip(table.target_labels, table.counts))
    msg.good(f"Wrote {output} ({len(shown)} of {len(table.extension_labels)} extension labels) and {json_path}")
    msg.text(f"{table.positions} spans per target label: {counts}")
    for reason, n in table.skipped.items():
        msg.warn(f"{n} gold span(s) left out: {reason}")


@analyze_app.command("tsne")
def tsne_cli(
    output: Path = output_file_argument("Image to write (PNG, or SVG/PDF by suffix)."),
    sets: List[str] = typer.Argument(
        ..., help="Doc sets as NAME=PATH.spacy, e.g. train=train.spacy test=test.spacy synthetic=synthetic.spacy."
    ),
    reference: str = typer.Option(
        "test", "--reference", help="Set whose nearest-neighbour coverage by the other sets is measured."
    ),
    embedding_model: Optional[str] = typer.Option(
        None,
        "--embedding-model",
        help="sentence-transformers model name or path (default: the offline all-MiniLM-L6-v2 package; a Chinese model such as text2vec is closer to the paper).",
    ),
    max_per_set: int = typer.Option(
        1000, "--max-per-set", min=1, help="Seeded random sample of at most this many sentences per set."
    ),
    perplexity: float = typer.Option(
        30.0, "--perplexity", help="t-SNE perplexity (lowered automatically for small sets)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the sampling and of t-SNE."),
) -> None:
    """t-SNE map of the sentence embeddings of several doc sets (paper,
    appendix B), with the nearest-neighbour similarity of the reference set to
    the others; coordinates and numbers go to OUTPUT with a .json suffix."""
    from ..analysis import build_embedding_map, plot_embedding_map

    try:
        paths = _parse_sets(sets)
    except ValueError as err:
        msg.fail(str(err), exits=1)
    rng = random.Random(seed)
    texts = {}
    vocab = spacy.blank("xx").vocab
    for name, path in paths.items():
        sentences = [doc.text for doc in read_docbin(path, vocab, allow_empty=True) if doc.text.strip()]
        if not sentences:  # e.g. synthesis kept nothing: map the other sets
            msg.warn(f"No sentences in {path}: set '{name}' is left out of the map")
        texts[name] = rng.sample(sentences, max_per_set) if len(sentences) > max_per_set else sentences
    try:
        embedding_map = build_embedding_map(
            texts, reference=reference, model=embedding_model, perplexity=perplexity, seed=seed
        )
    except (ValueError, OSError) as err:
        msg.fail(str(err), exits=1)
    plot_embedding_map(embedding_map, output)
    json_path = output.with_suffix(".json")
    srsly.write_json(json_path, embedding_map.to_dict())
    msg.good(f"Wrote {output} and {json_path}")
    if embedding_map.coverage:
        msg.table(
            [(name, f"{value:.3f}") for name, value in embedding_map.coverage.items()],
            header=(f"{reference} covered by", "mean nearest cosine"),
            divider=True,
            aligns=("l", "r"),
        )


@analyze_app.command("render")
def render_cli(
    model: Path = existing_dir_argument("Trained pipeline directory."),
    data: Path = existing_file_argument(".spacy DocBin to predict on (gold and extension spans are shown too)."),
    output: Path = output_file_argument("HTML file to write."),
    limit: int = typer.Option(30, "--limit", min=1, help="Render the first LIMIT docs."),
    gold: bool = typer.Option(True, "--gold/--no-gold", help="Show the gold spans under the predictions."),
    extensions: bool = typer.Option(True, "--extensions/--no-extensions", help="Show the docs' extension spans."),
    component: Optional[str] = typer.Option(
        None, "--component", help="Name of the knowfree component (default: the first)."
    ),
) -> None:
    """displaCy span rendering of the pipeline's predictions (HTML)."""
    from ..analysis import render_predictions

    nlp = _load_pipeline(model)
    docs = _read_docs(data, nlp.vocab)
    try:
        page = render_predictions(
            nlp,
            docs,
            component=component,
            gold=gold,
            extensions=extensions,
            limit=limit,
            title=f"{model} on {data.name}",
        )
    except ValueError as err:
        msg.fail(str(err), exits=1)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(page, encoding="utf8")
    msg.good(f"Wrote {output} ({min(limit, len(docs))} docs)")
