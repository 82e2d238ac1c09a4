"""``knowfree synthesize``: enriched explanation synthesis (pipeline 2)."""

import time
from pathlib import Path
from typing import List, Optional

import typer
from wasabi import msg

from ..docbin_io import read_docbin
from ..knowledge.pipeline import build_knowledge_pipeline
from ..llm.runner import resolve_task
from ..llm.tasks.explanation.task import (
    EntityExplanationTask,
    ExtensionDescriptionTask,
    make_entity_explanation_task,
    make_extension_description_task,
)
from ..synthesis.annotation import load_annotator
from ..synthesis.explanations import SynthesisSettings, Synthesizer
from ..synthesis.filters import FilterSettings
from ._app import OVERRIDES_CONTEXT, app, parse_config_overrides
from ._llm_common import finish, knowledge_overrides, llm_run_errors, make_runner
from ._options import (
    config_option,
    existing_dir_argument,
    existing_file_argument,
    existing_file_option,
    families_option,
    output_file_argument,
    user_dict_option,
)


@app.command("synthesize", context_settings=OVERRIDES_CONTEXT)
def synthesize_cli(
    ctx: typer.Context,
    fused_path: Path = existing_file_argument("Fusion samples: a .spacy DocBin (output of knowfree extend)."),
    annotator_path: Path = existing_dir_argument(
        "The knowfree pipeline trained on the fusion samples (e.g. training/model-best); frozen, it annotates the target entities."
    ),
    output_path: Path = output_file_argument("The synthetic .spacy DocBin to write."),
    config_path: Optional[Path] = config_option(
        "LLM config: a \\[model] block (any llm_models backend, e.g. spacy-knowfree.OpenAICompatible.v1) and optional \\[explanation] / \\[description] task blocks. Default: the embedded SmolLM2 backend.",
    ),
    lang: str = typer.Option(
        "zh", "--lang", help="Language of the prompts, sentence splitting and language filter: zh or en."
    ),
    cache_path: Optional[Path] = typer.Option(
        None,
        "--cache",
        dir_okay=False,
        help="Response cache (JSONL) for models without one; default OUT.llm_cache.jsonl. Rerun with the same cache to resume.",
    ),
    spans_key: Optional[str] = typer.Option(
        None, "--spans-key", help="doc.spans key of the target spans (default: the annotator's)."
    ),
    extension: bool = typer.Option(
        True, "--extension/--no-extension", help="Add extension spans with the knowledge pipeline of knowfree extend."
    ),
    knowledge_config: Optional[Path] = existing_file_option(
        "--knowledge-config",
        help="Knowledge pipeline config, as for knowfree extend -c (default: the jieba lexicon).",
    ),
    families: List[str] = families_option(),
    user_dict: Optional[Path] = user_dict_option(),
    batch_size: int = typer.Option(16, "--batch-size", help="Source docs per LLM batch."),
    limit: int = typer.Option(0, "--limit", help="Use only the first N source docs (0: all)."),
    max_doc_chars: int = typer.Option(
        0,
        "--max-doc-chars",
        help="Join consecutive sentences into docs of at most N characters (0: one sentence per doc).",
    ),
    max_new_tokens: int = typer.Option(256, "--max-new-tokens", help="Default backend: most tokens per explanation."),
    threads: Optional[int] = typer.Option(None, "--threads", help="Default backend: torch CPU threads."),
    min_lang_ratio: float = typer.Option(
        0.5, "--min-lang-ratio", help="Least share of letters in the language's script."
    ),
    max_output_chars: int = typer.Option(2000, "--max-output-chars", help="Drop longer (runaway) explanations."),
    min_sentence_chars: int = typer.Option(4, "--min-sentence-chars", help="Drop shorter sentences."),
    max_sentence_chars: int = typer.Option(200, "--max-sentence-chars", help="Drop longer sentences."),
    copy_similarity: float = typer.Option(
        0.9, "--copy-similarity", help="Similarity to the source at which text counts as a copy."
    ),
    keep_unfinished: bool = typer.Option(
        False, "--keep-unfinished", help="Keep a last sentence without end punctuation (often cut at the token limit)."
    ),
    set_ents: bool = typer.Option(
        True, "--ents/--no-ents", help="Also set doc.ents from non-overlapping target spans."
    ),
    combined_path: Optional[Path] = typer.Option(
        None, "--combined", dir_okay=False, help="Also write fusion + synthetic docs to this DocBin."
    ),
    log_path: Optional[Path] = typer.Option(
        None, "--log", dir_okay=False, help="Write every explanation and its fate as JSONL."
    ),
    summary_path: Optional[Path] = typer.Option(
        None, "--summary", dir_okay=False, help="Write the summary counts as JSON."
    ),
    model_section: Optional[str] = typer.Option(
        None,
        "--model-section",
        help="Dotted section of the @llm_models block in -c (default: \\[model], else the first llm component's model).",
    ),
) -> None:
    """Let an LLM explain every fusion sample (P_exp with its target entities,
    P_ext without), clean, filter and split the explanations into sentences,
    annotate them with the frozen knowfree pipeline and the knowledge
    pipeline, flag them synthetic (weight beta in the loss) and write them."""
    start = time.time()
    with llm_run_errors():
        annotator, knowfree = load_annotator(annotator_path)
        msg.info(
            f"Annotator: {annotator_path} (pipes {annotator.pipe_names}, target key "
            f"'{knowfree.key}', labels {list(knowfree.labels)})"
        )
        sources = read_docbin(fused_path, annotator.vocab)
        overrides = parse_config_overrides(ctx.args)
        runner, config = make_runner(
            config_path, output_path, cache_path, max_new_tokens, threads, overrides, model_section
        )
        key = spans_key or knowfree.key
        explanation = resolve_task(
            config, "explanation", EntityExplanationTask, lambda: make_entity_explanation_task(lang=lang, spans_key=key)
        )
        description = resolve_task(
            config, "description", ExtensionDescriptionTask, lambda: make_extension_description_task(lang=lang)
        )
        knowledge = (
            build_knowledge_pipeline(
                knowledge_config, families, user_dict, knowledge_overrides(knowledge_config, config_path, overrides)
            )
            if extension
            else None
        )
        if knowledge is not None:
            msg.info(f"Knowledge pipeline: {knowledge.pipe_names}")
        settings = SynthesisSettings(
            spans_key=key,
            batch_size=batch_size,
            max_doc_chars=max_doc_chars,
            set_ents=set_ents,
            limit=limit,
            filters=FilterSettings(
                lang=lang,
                min_lang_ratio=min_lang_ratio,
                max_output_chars=max_output_chars,
                min_sentence_chars=min_sentence_chars,
                max_sentence_chars=max_sentence_chars,
                copy_similarity=copy_similarity,
                drop_unfinished=not keep_unfinished,
            ),
        )
        synthesizer = Synthesizer(
            runner,
            annotator,
            knowledge=knowledge,
            explanation_task=explanation,
            description_task=description,
            settings=settings,
        )
        docs, summary = synthesizer.synthesize(sources, progress=True)
    finish(
        docs,
        summary,
        output_path,
        records=synthesizer.records,
        log_path=log_path,
        summary_path=summary_path,
        combined_path=combined_path,
        originals=sources,
    )
    msg.text(
        f"Done in {time.time() - start:.1f}s. Train on the fusion samples plus {output_path} "
        "(e.g. --combined, or a corpus directory holding both): synthetic docs weigh beta in the loss."
    )
