"""``knowfree augment generate|paraphrase``: the peer augmenters, with the same
output as ``knowfree synthesize`` (a DocBin of docs flagged synthetic). Both
subcommands run their :class:`~spacy_knowfree.synthesis.augmenter.Augmenter`
through :func:`_run_augmenter`."""

import time
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Callable, List, Optional

import spacy
import typer
from spacy.language import Language
from wasabi import msg

from ..docbin_io import read_docbin
from ..knowledge.pipeline import build_knowledge_pipeline
from ..llm.runner import LLMRunner
from ..synthesis.annotation import SyntheticAnnotator, load_annotator
from ..synthesis.augmenter import Augmenter, read_template_override
from ..synthesis.filters import FilterSettings
from ..synthesis.generation import EntityGenerationAugmenter, GenerationSettings
from ..synthesis.paraphrase import ParaphraseAugmenter, ParaphraseSettings
from ._app import OVERRIDES_CONTEXT, command_group, parse_config_overrides
from ._llm_common import finish, knowledge_overrides, llm_run_errors, make_runner
from ._options import (
    config_option,
    existing_file_argument,
    existing_file_option,
    families_option,
    output_file_argument,
    user_dict_option,
)

augment_app = command_group(
    "augment",
    help="Peer augmenters (entity-conditioned generation, entity-preserving paraphrasing): "
    "synthetic DocBins flagged like those of knowfree synthesize.",
)


class Sampling(str, Enum):
    class_uniform = "class"
    entity_uniform = "entity"


# The options every augmenter takes: how it reaches its LLM, and what is added to its docs.
_CONFIG_OPT = config_option(
    (
        "LLM config: a \\[model] block (any llm_models backend, e.g. spacy-knowfree.OpenAICompatible.v1). "
        "Default: the embedded SmolLM2 backend."
    ),
)
_CACHE_OPT = typer.Option(
    None,
    "--cache",
    dir_okay=False,
    help=(
        "Response cache (JSONL) for models without one; default OUT.llm_cache.jsonl. Rerun with the same cache to resume."
    ),
)
_SPANS_KEY_OPT = typer.Option("sc", "--spans-key", help="doc.spans key of the target spans (else doc.ents).")
_MAX_NEW_TOKENS_OPT = typer.Option(128, "--max-new-tokens", help="Default backend: most tokens per reply.")
_THREADS_OPT = typer.Option(None, "--threads", help="Default backend: torch CPU threads.")
_MODEL_SECTION_OPT = typer.Option(
    None,
    "--model-section",
    help=("Dotted section of the @llm_models block in -c (default: \\[model], else the first llm component's model)."),
)
_ANNOTATOR_OPT = typer.Option(
    None,
    "--annotator",
    exists=True,
    file_okay=False,
    help=("Re-annotate target spans with this frozen knowfree pipeline (the paper's appendix E setting)."),
)
_EXTENSION_OPT = typer.Option(
    False, "--extension/--no-extension", help=("Add extension spans with the knowledge pipeline of knowfree extend.")
)
_KNOWLEDGE_CONFIG_OPT = existing_file_option(
    "--knowledge-config",
    help=("Knowledge pipeline config (default: the jieba lexicon)."),
)
_SET_ENTS_OPT = typer.Option(True, "--ents/--no-ents", help="Also set doc.ents from non-overlapping target spans.")
_SUMMARY_OPT = typer.Option(None, "--summary", dir_okay=False, help="Write the summary counts as JSON.")


@dataclass
class _LLMOptions:
    """How the augmenter reaches its LLM (the options shared with knowfree synthesize)."""

    config_path: Optional[Path]
    cache_path: Optional[Path]
    max_new_tokens: int
    threads: Optional[int]
    model_section: Optional[str]


@dataclass
class _PostOptions:
    """What is added to the augmenter's docs: re-annotated targets, extension spans."""

    annotator_path: Optional[Path]
    extension: bool
    knowledge_config: Optional[Path]
    families: List[str]
    user_dict: Optional[Path]
    set_ents: bool


def _run_augmenter(
    ctx: typer.Context,
    input_path: Path,
    output_path: Path,
    lang: str,
    spans_key: str,
    llm: _LLMOptions,
    post: _PostOptions,
    build: Callable[[LLMRunner, Language], Augmenter],
    log_path: Optional[Path],
    summary_path: Optional[Path],
) -> None:
    """Read the input, run the augmenter ``build(runner, nlp)`` returns, annotate
    its docs like every synthetic doc (targets, extension spans) and write the
    DocBin, log and summary."""
    start = time.time()
    with llm_run_errors():
        nlp = spacy.blank(lang)
        docs = read_docbin(input_path, nlp.vocab)
        overrides = parse_config_overrides(ctx.args)
        runner, _ = make_runner(
            llm.config_path, output_path, llm.cache_path, llm.max_new_tokens, llm.threads, overrides, llm.model_section
        )
        augmenter = build(runner, nlp)
        out, summary = augmenter.run(docs, progress=True)
        annotator = load_annotator(post.annotator_path)[0] if post.annotator_path is not None else None
        knowledge = None
        if post.extension:
            knowledge = build_knowledge_pipeline(
                post.knowledge_config,
                post.families,
                post.user_dict,
                knowledge_overrides(post.knowledge_config, llm.config_path, overrides),
            )
        annotation = SyntheticAnnotator(annotator, knowledge, spans_key=spans_key, set_ents=post.set_ents)
        out = annotation(out, summary, progress=True)
    finish(out, summary, output_path, records=augmenter.records, log_path=log_path, summary_path=summary_path)
    msg.text(f"Done in {time.time() - start:.1f}s.")


@augment_app.command("generate", context_settings=OVERRIDES_CONTEXT)
def generate_cli(
    ctx: typer.Context,
    input_path: Path = existing_file_argument("Training .spacy DocBin (its target entities form the entity list)."),
    output_path: Path = output_file_argument("The synthetic .spacy DocBin to write."),
    config_path: Optional[Path] = _CONFIG_OPT,
    lang: str = typer.Option("zh", "--lang", help="Language of the prompts and the tokenizer: zh or en."),
    cache_path: Optional[Path] = _CACHE_OPT,
    spans_key: str = _SPANS_KEY_OPT,
    n_samples: int = typer.Option(100, "--n-samples", help="Sentences to generate (before filtering)."),
    max_entities: int = typer.Option(9, "--max-entities", help="Most entities per sentence."),
    min_entities: int = typer.Option(1, "--min-entities", help="Fewest entities per sentence (the paper uses 0)."),
    sampling: Sampling = typer.Option(
        Sampling.class_uniform, "--sampling", help="class: types uniform; entity: every entity equally likely."
    ),
    n_examples: int = typer.Option(5, "--n-examples", help="Few-shot examples per prompt, drawn from the input."),
    diversify: bool = typer.Option(
        True, "--diversify/--no-diversify", help="Grow the entity list by asking for new entities of the same type."
    ),
    keep_diversified: bool = typer.Option(
        True, "--keep-diversified/--no-keep-diversified", help="Keep the diversified sentences as samples too."
    ),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
    batch_size: int = typer.Option(16, "--batch-size", help="Sentences per round / LLM batch."),
    max_new_tokens: int = _MAX_NEW_TOKENS_OPT,
    threads: Optional[int] = _THREADS_OPT,
    generation_template: Optional[Path] = existing_file_option(
        "--generation-template",
        help="Custom Jinja template for sentence generation.",
    ),
    diversification_template: Optional[Path] = existing_file_option(
        "--diversification-template",
        help="Custom Jinja template for entity diversification.",
    ),
    annotator_path: Optional[Path] = _ANNOTATOR_OPT,
    extension: bool = _EXTENSION_OPT,
    knowledge_config: Optional[Path] = _KNOWLEDGE_CONFIG_OPT,
    families: List[str] = families_option(),
    user_dict: Optional[Path] = user_dict_option(),
    set_ents: bool = _SET_ENTS_OPT,
    log_path: Optional[Path] = typer.Option(
        None, "--log", dir_okay=False, help="Write every reply and its fate as JSONL."
    ),
    summary_path: Optional[Path] = _SUMMARY_OPT,
    model_section: Optional[str] = _MODEL_SECTION_OPT,
) -> None:
    """Entity-conditioned generation with entity diversification: sample up
    to N entities, let the LLM write a sentence marking them, relabel tokens
    that match the entity list, drop unparsable outputs; then ask for new
    entities of the same type and grow the entity list."""

    def build(runner: LLMRunner, nlp: Language) -> EntityGenerationAugmenter:
        settings = GenerationSettings(
            n_samples=n_samples,
            max_entities=max_entities,
            min_entities=min_entities,
            sampling=sampling.value,
            n_examples=n_examples,
            diversify=diversify,
            keep_diversified=keep_diversified,
            seed=seed,
            batch_size=batch_size,
        )
        return EntityGenerationAugmenter(
            runner,
            lang=lang,
            spans_key=spans_key,
            settings=settings,
            make_doc=nlp.make_doc,
            set_ents=set_ents,
            generation_template=read_template_override(generation_template, "generation", lang),
            diversification_template=read_template_override(diversification_template, "diversification", lang),
        )

    _run_augmenter(
        ctx,
        input_path,
        output_path,
        lang,
        spans_key,
        _LLMOptions(config_path, cache_path, max_new_tokens, threads, model_section),
        _PostOptions(annotator_path, extension, knowledge_config, families, user_dict, set_ents),
        build,
        log_path,
        summary_path,
    )


@augment_app.command("paraphrase", context_settings=OVERRIDES_CONTEXT)
def paraphrase_cli(
    ctx: typer.Context,
    input_path: Path = existing_file_argument("Training .spacy DocBin to paraphrase."),
    output_path: Path = output_file_argument("The synthetic .spacy DocBin to write."),
    config_path: Optional[Path] = _CONFIG_OPT,
    lang: str = typer.Option("zh", "--lang", help="Language of the prompt, the filters and the tokenizer: zh or en."),
    cache_path: Optional[Path] = _CACHE_OPT,
    spans_key: str = _SPANS_KEY_OPT,
    n_variants: int = typer.Option(1, "--n-variants", help="Paraphrases asked for per sentence."),
    include_empty: bool = typer.Option(False, "--include-empty", help="Also paraphrase sentences without entities."),
    limit: int = typer.Option(0, "--limit", help="Use only the first N input docs (0: all)."),
    batch_size: int = typer.Option(16, "--batch-size", help="Sentences per LLM batch."),
    max_new_tokens: int = _MAX_NEW_TOKENS_OPT,
    threads: Optional[int] = _THREADS_OPT,
    min_lang_ratio: float = typer.Option(
        0.5, "--min-lang-ratio", help="Least share of letters in the language's script."
    ),
    template: Optional[Path] = existing_file_option("--template", help="Custom Jinja template for paraphrasing."),
    annotator_path: Optional[Path] = _ANNOTATOR_OPT,
    extension: bool = _EXTENSION_OPT,
    knowledge_config: Optional[Path] = _KNOWLEDGE_CONFIG_OPT,
    families: List[str] = families_option(),
    user_dict: Optional[Path] = user_dict_option(),
    set_ents: bool = _SET_ENTS_OPT,
    log_path: Optional[Path] = typer.Option(
        None, "--log", dir_okay=False, help="Write every paraphrase and its fate as JSONL."
    ),
    summary_path: Optional[Path] = _SUMMARY_OPT,
    model_section: Optional[str] = _MODEL_SECTION_OPT,
) -> None:
    """Context paraphrasing that keeps the entities: rewrite the context
    around the entities, verify that every entity string survives, label it
    again and drop the paraphrases that lost one."""

    def build(runner: LLMRunner, nlp: Language) -> ParaphraseAugmenter:
        settings = ParaphraseSettings(
            n_variants=n_variants,
            include_empty=include_empty,
            batch_size=batch_size,
            limit=limit,
            filters=FilterSettings(lang=lang, min_lang_ratio=min_lang_ratio),
        )
        return ParaphraseAugmenter(
            runner,
            lang=lang,
            spans_key=spans_key,
            settings=settings,
            make_doc=nlp.make_doc,
            set_ents=set_ents,
            template=read_template_override(template, "paraphrase", lang),
        )

    _run_augmenter(
        ctx,
        input_path,
        output_path,
        lang,
        spans_key,
        _LLMOptions(config_path, cache_path, max_new_tokens, threads, model_section),
        _PostOptions(annotator_path, extension, knowledge_config, families, user_dict, set_ents),
        build,
        log_path,
        summary_path,
    )
