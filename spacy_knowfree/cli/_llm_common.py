"""Shared plumbing of ``knowfree synthesize`` and ``knowfree augment``:
building the LLM runner from ``-c`` (or the embedded SmolLM2), reading
inputs, writing outputs and printing the summary."""

import contextlib
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple

import srsly
import typer
from spacy.tokens import Doc
from thinc.api import Config
from wasabi import msg

from ..docbin_io import write_docbin
from ..llm.model_config import check_overrides
from ..llm.models.endpoint import redact
from ..llm.models.openai_compatible import BackendRequestError
from ..llm.runner import LLMRunner, build_llm_runner, find_llm_model_block, read_llm_config
from ..synthesis.summary import Summary, write_records

RESUME_HINT = "Rerun the same command to resume: finished replies are in the response cache."


@contextlib.contextmanager
def llm_run_errors() -> Iterator[None]:
    """Turn the failures of an LLM run into CLI exits that say how to resume."""
    try:
        yield
    except BackendRequestError as err:
        msg.fail(str(err), RESUME_HINT, exits=1)
    except KeyboardInterrupt:
        msg.warn("Interrupted. " + RESUME_HINT)
        raise typer.Exit(code=130) from None
    except ValueError as err:  # config errors may echo the endpoint: no credentials
        msg.fail(redact(err), exits=1)


def default_cache_path(output_path: Path) -> Path:
    """``OUT.spacy`` -> ``OUT.llm_cache.jsonl`` next to it."""
    return output_path.with_name(output_path.stem + ".llm_cache.jsonl")


def make_runner(
    config_path: Optional[Path],
    output_path: Path,
    cache_path: Optional[Path],
    max_new_tokens: int,
    threads: Optional[int],
    overrides: Optional[Dict[str, Any]] = None,
    model_section: Optional[str] = None,
) -> Tuple[LLMRunner, Optional[Config]]:
    """The LLM runner and the parsed LLM config (None for the default backend)."""
    if overrides and config_path is None:
        raise ValueError(f"Config overrides {sorted(overrides)} need an LLM config (-c).")
    config: Optional[Config] = None
    if config_path is not None:
        check_overrides(config_path, overrides)  # a mistyped --vars.x must not be ignored (KF211)
        config = read_llm_config(config_path, overrides)
        find_llm_model_block(config, model_section, config_path)  # fail early, with the path
    default_model: Dict[str, Any] = {"max_new_tokens": max_new_tokens}
    if threads:
        default_model["num_threads"] = threads
    cache = cache_path or default_cache_path(output_path)
    runner = build_llm_runner(config, cache_path=cache, default_model=default_model, model_section=model_section)
    where = runner.cache.path if runner.cache is not None else "none"
    backend = (
        "embedded SmolLM2 (spacy-knowfree.LocalCausalLM.v1)"
        if config is None
        else str(find_llm_model_block(config, model_section).get("@llm_models"))
    )
    msg.info(f"LLM: {backend}; response cache: {where}")
    return runner, config


def knowledge_overrides(
    knowledge_config: Optional[Path], config_path: Optional[Path], overrides: Dict[str, Any]
) -> Optional[Dict[str, Any]]:
    """The -c overrides also apply to --knowledge-config when both name the same file."""
    if (
        knowledge_config is not None
        and config_path is not None
        and Path(knowledge_config).resolve() == Path(config_path).resolve()
    ):
        return overrides or None
    return None


def finish(
    docs: List[Doc],
    summary: Summary,
    output_path: Path,
    *,
    records: Iterable[Dict[str, Any]] = (),
    log_path: Optional[Path] = None,
    summary_path: Optional[Path] = None,
    combined_path: Optional[Path] = None,
    originals: Iterable[Doc] = (),
) -> None:
    """Write the synthetic DocBin (and optional extras), then print the summary."""
    n = write_docbin(docs, output_path)
    if combined_path is not None:
        write_docbin(list(originals) + list(docs), combined_path)
        msg.good(f"Wrote the combined DocBin (input + synthetic docs) to {combined_path}")
    if log_path is not None:
        write_records(records, log_path)
        msg.good(f"Wrote the per-output log to {log_path}")
    if summary_path is not None:
        summary_path.parent.mkdir(parents=True, exist_ok=True)
        srsly.write_json(summary_path, summary.to_dict())
    msg.good(f"Wrote {n} synthetic doc(s) to {output_path}")
    summary.print()
