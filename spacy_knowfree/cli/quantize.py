"""``knowfree quantize``: save a pipeline whose knowfree span heads predict
with int8 Linear layers on the CPU (torch dynamic quantization)."""

from pathlib import Path
from typing import Dict, List, Optional

import typer
from spacy.language import Language
from spacy.training import Example
from wasabi import msg

from ..component import KnowFREE
from ..docbin_io import read_docbin
from ..pipeline_inputs import load_pipeline, require_knowfree
from ._app import app
from ._options import existing_dir_argument, existing_file_option


@app.command("quantize")
def quantize_cli(
    model_path: Path = existing_dir_argument("Trained pipeline with a knowfree component (e.g. training/model-best)."),
    output_path: Path = typer.Argument(..., file_okay=False, help="Directory to save the int8 pipeline to."),
    component_name: Optional[str] = typer.Option(
        None, "--component", help="Name of the knowfree component (default: every knowfree component)."
    ),
    data_path: Optional[Path] = existing_file_option(
        "--data",
        help="A .spacy DocBin with gold spans: report the scores of both pipelines on it.",
    ),
) -> None:
    """Save MODEL to OUT with int8 inference in its knowfree components.

    The span head's attention projects every cell of the span grid to Q/K/V
    in int8 at inference (most of the head's Linear multiply-adds); the weights on
    disk stay float32, so OUT loads like any pipeline and can be trained
    further. Sets int8 = true in the component's config; set it back to false to
    predict in float32 again. With --data, the F-scores of MODEL and OUT are
    printed side by side."""
    try:
        nlp = load_pipeline(model_path)
        if component_name is not None:
            components: List[KnowFREE] = [require_knowfree(nlp, component_name, model_path)]
        else:
            components = [pipe for _, pipe in nlp.pipeline if isinstance(pipe, KnowFREE)]
            if not components:
                require_knowfree(nlp, None, model_path)  # raises KF401
        examples = _examples(nlp, data_path) if data_path is not None else None
        before = _scores(nlp, examples, components) if examples is not None else {}
        for component in components:
            component.cfg["int8"] = True
            nlp.get_pipe_config(component.name)["int8"] = True  # config.cfg in step with cfg
        after = _scores(nlp, examples, components) if examples is not None else {}
    except (OSError, ValueError) as err:
        msg.fail(str(err), exits=1)
    output_path.mkdir(parents=True, exist_ok=True)  # spaCy creates only the last folder
    nlp.to_disk(output_path)
    msg.good(f"Saved the int8 pipeline to {output_path} (int8 components: {', '.join(c.name for c in components)})")
    if before:
        msg.table(
            [
                (
                    score,
                    f"{100 * before[score]:.2f}",
                    f"{100 * after[score]:.2f}",
                    f"{100 * (after[score] - before[score]):+.2f}",
                )
                for score in before
            ],
            header=("score", "float32", "int8", "difference"),
            divider=True,
        )


def _examples(nlp: Language, path: Path) -> List[Example]:
    return [Example(nlp.make_doc(doc.text), doc) for doc in read_docbin(path, nlp.vocab)]


def _scores(nlp: Language, examples: List[Example], components: List[KnowFREE]) -> Dict[str, float]:
    scores = nlp.evaluate(examples)
    keys = [f"spans_{component.key}_f" for component in components]
    return {key: float(scores.get(key) or 0.0) for key in keys}
