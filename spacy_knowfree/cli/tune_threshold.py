"""``knowfree tune-threshold``: pick the decoding threshold of a trained
knowfree component on dev data, and optionally save the pipeline with it."""

from pathlib import Path
from typing import Optional

import spacy
import srsly
import typer
from wasabi import msg

from ..docbin_io import read_docbin
from ..pipeline_inputs import load_pipeline, require_knowfree
from ..threshold_tuning import sweep_thresholds, threshold_grid
from ._app import app
from ._options import existing_dir_argument, existing_file_argument


@app.command("tune-threshold")
def tune_threshold_cli(
    model_path: Path = existing_dir_argument("Trained pipeline with a knowfree component (e.g. training/model-best)."),
    dev_path: Path = existing_file_argument("Dev .spacy DocBin with gold spans (not the test split)."),
    output_path: Optional[Path] = typer.Option(
        None, "--output", "-o", file_okay=False, help="Save the pipeline here with the best threshold."
    ),
    component_name: Optional[str] = typer.Option(
        None, "--component", help="Name of the knowfree component (default: the first)."
    ),
    low: float = typer.Option(0.05, "--min", help="Lowest threshold tried."),
    high: float = typer.Option(0.95, "--max", help="Highest threshold tried."),
    step: float = typer.Option(0.05, "--step", help="Step between thresholds."),
    json_path: Optional[Path] = typer.Option(
        None, "--json", dir_okay=False, help="Write every threshold's P/R/F as JSON."
    ),
    held_out_splits: int = typer.Option(
        20,
        "--held-out-splits",
        min=0,
        help="Random halvings of the dev docs for the held-out check: a threshold chosen on one half is "
        "scored on the other (0: skip).",
    ),
    gpu_id: int = typer.Option(-1, "--gpu-id", help="GPU to predict on (-1: CPU)."),
) -> None:
    """Sweep the span-probability threshold of a knowfree component on dev
    data (the logits are computed once) and report P/R/F at each threshold.
    A lower threshold trades precision for recall. With --output, the
    pipeline is saved with the best threshold in its component config.
    The best threshold on dev flatters itself; the held-out check reports
    what a threshold chosen this way gains on dev docs it was not chosen on."""
    if gpu_id >= 0:
        spacy.require_gpu(gpu_id)
    try:
        thresholds = threshold_grid(low, high, step)
        nlp = load_pipeline(model_path)
        component = require_knowfree(nlp, component_name, model_path)
        docs = read_docbin(dev_path, nlp.vocab)
        sweep = sweep_thresholds(nlp, docs, component, thresholds, held_out_splits=held_out_splits)
    except (OSError, ValueError) as err:
        msg.fail(str(err), exits=1)
    best = sweep.best
    rows = [
        (
            f"{s.threshold:.2f}",
            f"{100 * s.p:.2f}",
            f"{100 * s.r:.2f}",
            f"{100 * s.f:.2f}",
            s.n_predicted,
            "best" if s is best else ("current" if abs(s.threshold - sweep.current) < 1e-9 else ""),
        )
        for s in sweep.scores
    ]
    msg.table(
        rows, header=("threshold", "P", "R", "F", "spans", ""), divider=True, aligns=("r", "r", "r", "r", "r", "l")
    )
    current = sweep.at(sweep.current)
    was = f" (current {sweep.current:.2f}: F {100 * current.f:.2f})" if current else f" (current {sweep.current:.2f})"
    msg.good(
        f"Best threshold of '{component.name}' on {sweep.n_docs} dev docs ({sweep.n_gold} gold spans): "
        f"{best.threshold:.2f}, F {100 * best.f:.2f}{was}"
    )
    check = sweep.held_out
    if check is not None:
        report = msg.good if check.gain > 0 else msg.warn
        report(
            f"Held-out check: a threshold chosen on half of the dev docs (mean {check.mean_threshold:.2f}) "
            f"scores {100 * check.gain:+.2f} F1 (sd {100 * check.gain_sd:.2f}) against {sweep.current:.2f} "
            f"on the other half ({2 * check.splits} halves)."
            + ("" if check.gain > 0 else " Tuning is not expected to help on new data.")
        )
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        srsly.write_json(json_path, sweep.to_dict())
    if output_path is not None:
        component.cfg["threshold"] = best.threshold
        # keep config.cfg in step with the component's cfg
        nlp.get_pipe_config(component.name)["threshold"] = best.threshold
        output_path.mkdir(parents=True, exist_ok=True)  # spaCy creates only the last folder
        nlp.to_disk(output_path)
        msg.good(f"Saved the pipeline with threshold {best.threshold:.2f} to {output_path}")
