"""``knowfree extend``: add extension spans (pipeline 1) to a training DocBin."""

import contextlib
import time
from collections import Counter
from pathlib import Path
from typing import Dict, Iterable, List, Optional

import typer
from spacy.language import Language
from spacy.tokens import Doc
from tqdm import tqdm
from wasabi import msg

from ..component import UNLABELED_FLAG
from ..docbin_io import read_docbin, write_docbin
from ..errors import Errors
from ..knowledge.pipeline import (
    EXTENSION_SPANS_KEY,
    build_knowledge_pipeline,
    dropped_rows,
    extension_label_counts,
    llm_backends,
    llm_call_rows,
    redacted_error,
    response_cache_files,
    set_retry_failed,
)
from ._app import OVERRIDES_CONTEXT, app, parse_config_overrides
from ._options import config_option, existing_file_argument, families_option, output_file_argument, user_dict_option


def _print_dropped(nlp: Language, docs: List[Doc], limit: int = 20) -> None:
    """List the prompts without a clean reply (dropped or cut) and what to do about them."""
    rows = dropped_rows(nlp, docs)
    if not rows:
        return
    msg.divider(f"LLM prompts dropped or cut ({len(rows)})")
    msg.table(rows[:limit], header=("llm component", "doc", "reason", "server message"), divider=True)
    if len(rows) > limit:
        typer.echo(f"... and {len(rows) - limit} more")
    from ..llm.models.openai_compatible import DROP_HINTS

    for reason in sorted({row[2] for row in rows}):
        if reason in DROP_HINTS:
            typer.echo(f"{reason}: {DROP_HINTS[reason]}")
    typer.echo("Rerun with --retry-failed to ask the LLM again for these prompts.")


def _count_lines(path: Path) -> int:
    if not path.exists():
        return 0
    with path.open("rb") as handle:
        return sum(1 for line in handle if line.strip())


def _stats_summary(docs: Iterable[Doc]) -> Dict[str, Counter]:
    try:
        from ..llm.tasks.stats import summarize_stats
    except ImportError:
        return {}
    return summarize_stats(docs)


def _format_stats(summary: Dict[str, Counter]) -> str:
    from ..llm.tasks.stats import format_stats

    return format_stats(summary)


# ----------------------------------------------------------------------------- command
@app.command("extend", context_settings=OVERRIDES_CONTEXT)
def extend_cli(
    ctx: typer.Context,
    input_path: Path = existing_file_argument("Training .spacy DocBin."),
    output_path: Path = output_file_argument("Fused .spacy DocBin to write."),
    config_path: Optional[Path] = config_option(
        "spaCy config of the knowledge pipeline, e.g. one written by knowfree init extend-config "
        "(--source lexicon|smollm2|openai|lexicon+llm; in a checkout also configs/extend_*.cfg). Settings can be "
        "overridden like in spacy train: --vars.endpoint http://127.0.0.1:8000/v1/chat/completions "
        "--paths.cache cache/llm_replies.jsonl. Default: the offline jieba lexicon.",
    ),
    families: List[str] = families_option("Lexicon families to add (repeatable)."),
    user_dict: Optional[Path] = user_dict_option(),
    batch_size: int = typer.Option(32, "--batch-size", help="Docs per pipeline batch."),
    retry_failed: bool = typer.Option(
        False,
        "--retry-failed",
        help="Ask the LLM again for the prompts recorded in the response cache "
        "as dropped (refused, filtered or empty replies) or cut (too_long).",
    ),
    unlabeled: bool = typer.Option(
        False,
        "--unlabeled",
        help="Flag every output doc as unlabeled text "
        "(doc.user_data['knowfree_unlabeled']): the knowfree component trains only its extension "
        "spans, never its (absent) gold spans. Refused for docs that carry gold spans.",
    ),
    engine: str = typer.Option(
        "local",
        "--engine",
        help="local: this process; ray: shards on Ray Data actors, each shard with its "
        'own response cache file (pip install "spacy-knowfree\\[ray]").',
    ),
    shard_size: int = typer.Option(500, "--shard-size", help="ray: docs per shard, the unit of work and resumption."),
    num_actors: int = typer.Option(1, "--num-actors", help="ray: actors, each with its own knowledge pipeline."),
    ray_address: Optional[str] = typer.Option(
        None, "--ray-address", help="ray: the cluster to use (auto, HOST:6379, ray://HOST:10001); default: a local Ray."
    ),
) -> None:
    """Run a knowledge source over the training docs and keep what it writes to
    doc.spans["knowfree_ext"] (the extension spans the knowfree component
    trains on with weight alpha). Gold spans, tokens and user data are kept.

    Interrupted or crashed runs are cheap to resume: with a response cache
    (spacy-knowfree.ResponseCache.v1, set in the shipped configs) every LLM
    reply is appended to the cache file the moment it arrives, so running the
    same command again only asks the LLM for the prompts still missing; the
    others are answered from the cache and re-parsed (a fully cached rerun
    makes 0 calls and loads no local model weights). The summary shows LLM
    calls made vs answered from the cache, and the items the parsers dropped.
    """
    overrides = parse_config_overrides(ctx.args)
    if overrides and config_path is None:
        msg.fail(f"Config overrides {sorted(overrides)} need a config (-c).", exits=1)
    if engine != "local":
        _extend_on_ray(
            input_path,
            output_path,
            engine,
            config_path,
            families,
            user_dict,
            overrides,
            batch_size,
            shard_size,
            num_actors,
            unlabeled,
            retry_failed,
            ray_address,
        )
        return
    start = time.time()
    try:
        nlp = build_knowledge_pipeline(config_path, families, user_dict, overrides)
    except ValueError as err:  # KF messages of the config, backends and cache: no traceback
        msg.fail(redacted_error(err), exits=1)
    set_retry_failed(nlp, retry_failed)
    msg.info(f"Knowledge pipeline: {nlp.pipe_names}")
    try:
        docs = read_docbin(input_path, nlp.vocab)
    except ValueError as err:
        msg.fail(str(err), exits=1)
    if unlabeled:
        labelled = sum(
            1 for doc in docs if any(len(group) for key, group in doc.spans.items() if key != EXTENSION_SPANS_KEY)
        )
        if labelled:
            msg.fail(Errors.KF276.format(path=input_path, count=labelled), exits=1)
        for doc in docs:
            doc.user_data[UNLABELED_FLAG] = True
    labels_before = extension_label_counts(docs)
    stats_before = _stats_summary(docs)
    done: List[Doc] = []
    try:
        for doc in tqdm(nlp.pipe(docs, batch_size=batch_size), total=len(docs), desc="extend", unit="doc"):
            if doc.spans.get(EXTENSION_SPANS_KEY) is None:
                doc.spans[EXTENSION_SPANS_KEY] = []
            done.append(doc)
    except KeyboardInterrupt:
        _report_stop(nlp, len(done), len(docs), "interrupted", output_path)
        raise typer.Exit(code=130) from None
    except ConnectionError as err:  # the backends' BackendRequestError: no traceback needed
        _report_stop(nlp, len(done), len(docs), f"{type(err).__name__}: {err}", output_path)
        raise typer.Exit(code=1) from None
    except Exception as err:
        _report_stop(nlp, len(done), len(docs), f"{type(err).__name__}: {err}", output_path)
        with contextlib.suppress(AttributeError):
            err.knowfree_reported = True  # type: ignore[attr-defined]  # KF275 said it: main() prints none
        raise
    write_docbin(done, output_path)
    elapsed = time.time() - start
    msg.good(f"Wrote {len(docs)} docs to {output_path} in {elapsed:.1f}s")
    _print_summary(nlp, docs, labels_before, stats_before, elapsed)


def _report_stop(nlp: Language, done: int, total: int, reason: str, output_path: Path) -> None:
    """Say how far a stopped run got and what a rerun will reuse."""
    files = response_cache_files(nlp)
    if files:
        cached = (
            "LLM replies received so far are kept in "
            + ", ".join(f"{path} ({_count_lines(path)} replies)" for path in files)
            + "; run the same command again to continue: cached prompts are not asked again."
        )
    elif llm_backends(nlp):
        cached = "No response cache is configured, so a rerun asks the LLM for everything again."
    else:
        cached = ""
    _print_llm_calls(nlp)
    _print_dropped(nlp, [])
    msg.fail(
        Errors.KF275.format(
            done=done, total=total, error=redacted_error(reason), output=output_path, cached=cached
        ).rstrip()
    )


def _print_llm_calls(nlp: Language) -> Dict[str, int]:
    rows, total, uncounted = llm_call_rows(nlp)
    if not rows:
        return total
    msg.table(
        rows,
        header=("llm component", "backend", "calls made", "from cache", "failed"),
        divider=True,
        aligns=("l", "l", "r", "r", "r"),
    )
    line = f"LLM calls: {total['made']} made, {total['cached']} answered from cache, {total['failed']} failed"
    if uncounted:
        line += f" (not counted: {', '.join(uncounted)}, whose model has no call counter)"
    if total.get("dropped"):
        line += f"; {total['dropped']} prompt(s) dropped"
    typer.echo(line)
    return total


def _print_summary(
    nlp: Language, docs: List[Doc], labels_before: Counter, stats_before: Dict[str, Counter], elapsed: float
) -> None:
    labels_after = extension_label_counts(docs)
    added = labels_after - labels_before
    families_count: Counter = Counter()
    families_added: Counter = Counter()
    for label, count in labels_after.items():
        families_count[label.split(":", 1)[0]] += count
    for label, count in added.items():
        families_added[label.split(":", 1)[0]] += count
    overview = [
        ("sentences (docs) done", len(docs)),
        ("extension spans added", sum(added.values())),
        ("time", f"{elapsed:.1f}s"),
    ]
    backends = llm_backends(nlp)
    if backends:
        _, total, _ = llm_call_rows(nlp)
        overview += [("LLM calls made", total["made"]), ("LLM calls from cache", total["cached"])]
        if total["dropped"]:
            overview.append(("LLM prompts dropped", total["dropped"]))
    msg.table(overview, header=("summary", ""), divider=True)
    msg.table(
        [(fam, families_count[fam], families_added[fam]) for fam in sorted(families_count)],
        header=("family", "spans", "added"),
        divider=True,
        aligns=("l", "r", "r"),
    )
    top = [(label, count, added[label]) for label, count in labels_after.most_common(15)]
    msg.table(top, header=("label (top 15)", "spans", "added"), divider=True, aligns=("l", "r", "r"))
    if backends:
        summary = _stats_summary(docs)
        delta = {fam: counts - stats_before.get(fam, Counter()) for fam, counts in summary.items()}
        delta = {fam: counts for fam, counts in delta.items() if counts}
        msg.divider("LLM items kept and dropped (by family and reason)")
        typer.echo(_format_stats(delta) if delta else "no LLM replies were parsed")
        _print_llm_calls(nlp)
        _print_dropped(nlp, docs)


def _extend_on_ray(
    input_path: Path,
    output_path: Path,
    engine: str,
    config_path: Optional[Path],
    families: List[str],
    user_dict: Optional[Path],
    overrides: Dict,
    batch_size: int,
    shard_size: int,
    num_actors: int,
    unlabeled: bool,
    retry_failed: bool,
    ray_address: Optional[str],
) -> None:
    """``extend --engine ray``: shards on Ray actors (spacy_knowfree.scaling.extend), then the summary."""
    from ..scaling.extend import extend_on_ray

    if engine != "ray":
        msg.fail(Errors.KF707.format(engine=engine), exits=1)
    try:
        summary = extend_on_ray(
            input_path,
            output_path,
            config_path=config_path,
            families=families,
            user_dict=user_dict,
            overrides=overrides,
            batch_size=batch_size,
            shard_size=shard_size,
            num_actors=num_actors,
            unlabeled=unlabeled,
            retry_failed=retry_failed,
            ray_address=ray_address,
        )
    except (ValueError, ImportError, RuntimeError) as err:
        msg.fail(redacted_error(err), exits=1)
    msg.good(
        f"Wrote {summary.docs} docs to {output_path} in {summary.seconds:.1f}s "
        f"({summary.shards_written} shard(s) run, {summary.shards_skipped} already done)"
    )
    families_added: Counter = Counter()
    for label, count in summary.added.items():
        families_added[label.split(":", 1)[0]] += count
    msg.table(
        [(fam, count) for fam, count in sorted(families_added.items())],
        header=("family", "added"),
        divider=True,
        aligns=("l", "r"),
    )
    calls = summary.calls
    typer.echo(
        f"LLM calls: {calls['made']} made, {calls['cached']} answered from cache, {calls['failed']} "
        f"failed, {calls['dropped']} prompt(s) dropped"
    )
    if summary.cache_dir:
        typer.echo(f"Response caches, one per shard: {summary.cache_dir}")
