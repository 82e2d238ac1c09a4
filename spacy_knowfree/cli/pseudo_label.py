"""``knowfree pseudo-label``: self-training data from unlabeled docs (no LLM needed)."""

import time
from pathlib import Path
from typing import List, Optional

import srsly
import typer
from wasabi import msg

from ..errors import Errors
from ..knowledge.pipeline import build_knowledge_pipeline
from ..synthesis.pseudo_labels import DEFAULT_MIN_CONFIDENCE, check_min_confidence, pseudo_label
from ._app import OVERRIDES_CONTEXT, app, parse_config_overrides
from ._options import (
    existing_dir_argument,
    existing_file_argument,
    existing_file_option,
    families_option,
    output_file_argument,
    user_dict_option,
)


@app.command("pseudo-label", context_settings=OVERRIDES_CONTEXT)
def pseudo_label_cli(
    ctx: typer.Context,
    model_path: Path = existing_dir_argument(
        "The teacher: a trained knowfree pipeline (e.g. training/model-best), used frozen."
    ),
    input_path: Path = existing_file_argument(
        "Unlabeled docs: a .spacy DocBin (e.g. knowfree convert RAW.txt OUT.spacy --format text, or knowfree extend --unlabeled)."
    ),
    output_path: Path = output_file_argument(
        "The pseudo-labeled .spacy DocBin to write (docs flagged synthetic: weight beta in the loss)."
    ),
    min_confidence: float = typer.Option(
        DEFAULT_MIN_CONFIDENCE,
        "--min-confidence",
        help="Keep target spans whose probability is above this (chosen on dev; see the README). Below the teacher's own threshold, the teacher decodes at it.",
    ),
    spans_key: Optional[str] = typer.Option(
        None, "--spans-key", help="doc.spans key of the written target spans (default: the teacher's)."
    ),
    extension: bool = typer.Option(
        True,
        "--extension/--no-extension",
        help="Add extension spans with the knowledge pipeline of knowfree extend (spans already on the docs are kept).",
    ),
    knowledge_config: Optional[Path] = existing_file_option(
        "--knowledge-config",
        "-c",
        help="Knowledge pipeline config, as for knowfree extend -c (default: the jieba lexicon); --vars.x overrides its settings.",
    ),
    families: List[str] = families_option(),
    user_dict: Optional[Path] = user_dict_option(),
    round_: int = typer.Option(1, "--round", help="Self-training round, recorded in each doc's provenance."),
    limit: int = typer.Option(0, "--limit", help="Use only the first N input docs (0: all)."),
    batch_size: int = typer.Option(64, "--batch-size", help="Docs per teacher batch."),
    retokenize: bool = typer.Option(
        False,
        "--retokenize/--keep-tokens",
        help="Make the docs again with the teacher's tokenizer (default: keep their tokens and spans).",
    ),
    drop_empty: bool = typer.Option(
        False,
        "--drop-empty/--keep-empty",
        help="Leave out docs without a kept span (default: write them, with no target spans).",
    ),
    set_ents: bool = typer.Option(True, "--ents/--no-ents", help="Also set doc.ents from non-overlapping kept spans."),
    summary_path: Optional[Path] = typer.Option(
        None, "--summary", dir_okay=False, help="Write the summary counts as JSON."
    ),
) -> None:
    """Annotate unlabeled docs with a frozen knowfree pipeline: its target
    spans above --min-confidence with their probabilities, extension spans
    from the knowledge pipeline; flag the docs synthetic (weight beta, with
    their provenance) instead of unlabeled and write them for the student."""
    start = time.time()
    min_confidence = check_min_confidence(min_confidence)
    overrides = parse_config_overrides(ctx.args)
    if overrides and knowledge_config is None:
        raise ValueError(
            Errors.KF343.format(
                arg="config overrides",
                value=sorted(overrides),
                hint="They set a knowledge config: give it with --knowledge-config.",
            )
        )
    knowledge = (
        build_knowledge_pipeline(knowledge_config, families, user_dict, overrides or None) if extension else None
    )
    if knowledge is not None:
        msg.info(f"Knowledge pipeline: {knowledge.pipe_names}")
    stats = pseudo_label(
        model_path,
        input_path,
        output_path,
        limit=limit,
        retokenize=retokenize,
        progress=True,
        min_confidence=min_confidence,
        knowledge=knowledge,
        spans_key=spans_key,
        set_ents=set_ents,
        drop_empty=drop_empty,
        round_=round_,
        batch_size=batch_size,
    )
    if summary_path is not None:
        summary_path.parent.mkdir(parents=True, exist_ok=True)
        srsly.write_json(summary_path, stats.to_dict())
    msg.good(f"Wrote {stats.docs} pseudo-labeled doc(s) to {output_path} in {time.time() - start:.1f}s")
    stats.print()
    msg.text(f"Train the student on the gold docs plus {output_path}: pseudo-labeled docs weigh beta in the loss.")
