"""``knowfree extend``: add extension spans (pipeline 1) to a training DocBin."""
import contextlib
import time
from collections import Counter
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple

import spacy
import typer
from spacy.cli._util import parse_config_overrides
from spacy.language import Language
from spacy.tokens import Doc, DocBin
from tqdm import tqdm
from wasabi import msg

from ..component import UNLABELED_FLAG
from ..docbin_io import read_docbin
from ..errors import Errors
from ._app import app

EXTENSION_SPANS_KEY = "knowfree_ext"


def _import_llm_tasks(config: Optional[Dict[str, Any]] = None) -> None:
    """Register the spacy-knowfree llm tasks and models (also when the package
    is used from a checkout, without its entry points installed). Without
    spacy-llm, a ``config`` that uses it raises KF600 naming the extra."""
    try:
        import spacy_knowfree.llm_tasks  # noqa: F401
    except ImportError as err:  # configs without llm components still work
        if config is not None and _needs_spacy_llm(config):
            missing = (getattr(err, "name", None) or "spacy_llm").split(".")[0]
            raise ImportError(Errors.KF600.format(command="extend -c", extra="llm", module=missing)) from None


def _needs_spacy_llm(block: Any) -> bool:
    """Whether a config uses spacy-llm: an ``llm`` factory or an ``@llm_*`` block."""
    if isinstance(block, dict):
        if block.get("factory") == "llm" or any(str(key).startswith("@llm_") for key in block):
            return True
        return any(_needs_spacy_llm(value) for value in block.values())
    return False


def build_knowledge_pipeline(
    config_path: Optional[Path],
    families: List[str],
    user_dict: Optional[Path],
    overrides: Optional[Dict[str, Any]] = None,
) -> Language:
    """The pipeline that writes extension spans: a user config (e.g. an ``llm``
    component with the spacy-knowfree tasks) or the offline jieba lexicon.

    config_path (Optional[Path]): knowledge pipeline config; None for the lexicon.
    families (List[str]): lexicon families (only without a config).
    user_dict (Optional[Path]): jieba user dictionary (only without a config).
    overrides (Optional[Dict[str, Any]]): config overrides such as
        ``{"vars.endpoint": "http://127.0.0.1:8000/v1/chat/completions"}``.
    RETURNS (Language): the initialized pipeline.
    """
    if config_path is not None:
        _check_overrides(config_path, overrides)
        config = spacy.util.load_config(config_path, overrides=overrides or {}, interpolate=True)
        _import_llm_tasks(config)
        nlp = spacy.util.load_model_from_config(config, auto_fill=True, validate=True)
        nlp.initialize()
        return nlp
    nlp = spacy.blank("zh")
    nlp.add_pipe(
        "knowfree_lexicon",
        config={
            "spans_key": EXTENSION_SPANS_KEY,
            "families": families,
            "user_dict": str(user_dict) if user_dict else None,
        },
    )
    return nlp


def _redacted(err: Any) -> str:
    """The message of ``err`` without URL credentials (config errors echo the endpoint)."""
    try:
        from ..llm_tasks.endpoint import redact
    except ImportError:  # no spacy-llm: no LLM endpoint in the message
        return str(err)
    return redact(err)


def _check_overrides(config_path: Path, overrides: Optional[Dict[str, Any]]) -> None:
    """Refuse ``--vars.x``/``--paths.x`` overrides the config has no setting for (KF211)."""
    try:
        from ..llm_tasks.model_config import check_overrides
    except ImportError:  # no spacy-llm: no LLM settings to mistype
        return
    check_overrides(config_path, overrides)


# ----------------------------------------------------------------------------- LLM accounting
def llm_backends(nlp: Language) -> List[Tuple[str, Any]]:
    """(component name, model) of each spacy-llm component of ``nlp``."""
    out = []
    for name, pipe in nlp.pipeline:
        model = getattr(pipe, "_model", None)  # spacy-llm's LLMWrapper keeps its model here
        if model is not None and hasattr(pipe, "task"):
            out.append((name, model))
    return out


def llm_call_rows(nlp: Language) -> Tuple[List[Tuple[str, str, str, str, str]], Dict[str, int], List[str]]:
    """Per llm component: (name, backend, made, cached, failed), the totals and
    the names of components whose model does not count its calls."""
    rows = []
    total = {"made": 0, "cached": 0, "failed": 0, "dropped": 0}
    uncounted = []
    for name, model in llm_backends(nlp):
        calls = getattr(model, "calls", None)
        backend = type(model).__name__
        if calls is None or not hasattr(calls, "as_dict"):
            rows.append((name, backend, "?", "?", "?"))
            uncounted.append(name)
            continue
        counts = calls.as_dict()
        for key in total:
            total[key] += int(counts.get(key, 0))
        rows.append((name, backend, str(counts.get("made", 0)), str(counts.get("cached", 0)),
                     str(counts.get("failed", 0))))
    return rows, total, uncounted


def response_cache_files(nlp: Language) -> List[Path]:
    """The distinct response cache files used by the llm components."""
    files: Dict[str, Path] = {}
    for _, model in llm_backends(nlp):
        path = getattr(getattr(model, "cache", None), "path", None)
        if path is not None:
            files.setdefault(str(Path(path).resolve()), Path(path))
    return list(files.values())


def _set_retry_failed(nlp: Language, retry: bool) -> None:
    """Make the response caches ask again (or not) for prompts recorded as dropped or cut."""
    for _, model in llm_backends(nlp):  # none without spacy-llm: the import below is safe
        from ..llm_tasks.response_cache import retry_failed_from_env

        cache = getattr(model, "cache", None)
        if cache is not None and hasattr(cache, "retry_failed"):
            cache.retry_failed = retry or retry_failed_from_env()


def dropped_rows(nlp: Language, docs: List[Doc]) -> List[Tuple[str, str, str, str]]:
    """(component, doc, reason, server message) of each prompt without a clean reply."""
    rows = []
    for name, model in llm_backends(nlp):
        for item in getattr(model, "dropped", None) or []:
            doc = item.get("doc")
            where = str(doc)
            if isinstance(doc, int) and 0 <= doc < len(docs):
                text = docs[doc].text
                where += f" ({text[:20]}{'...' if len(text) > 20 else ''})"
            message = " ".join(str(item.get("message") or "").split())
            rows.append((name, where, str(item.get("reason")), message[:100] + ("..." if len(message) > 100 else "")))
    return rows


def _print_dropped(nlp: Language, docs: List[Doc], limit: int = 20) -> None:
    """List the prompts without a clean reply (dropped or cut) and what to do about them."""
    rows = dropped_rows(nlp, docs)
    if not rows:
        return
    msg.divider(f"LLM prompts dropped or cut ({len(rows)})")
    msg.table(rows[:limit], header=("llm component", "doc", "reason", "server message"), divider=True)
    if len(rows) > limit:
        typer.echo(f"... and {len(rows) - limit} more")
    from ..llm_tasks.openai_compatible import DROP_HINTS

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
        from ..llm_tasks.stats import summarize_stats
    except ImportError:
        return {}
    return summarize_stats(docs)


def _format_stats(summary: Dict[str, Counter]) -> str:
    from ..llm_tasks.stats import format_stats

    return format_stats(summary)


def _label_counts(docs: Iterable[Doc]) -> Counter:
    counts: Counter = Counter()
    for doc in docs:
        group = doc.spans.get(EXTENSION_SPANS_KEY)
        if group is not None:
            counts.update(span.label_ for span in group)
    return counts


# ----------------------------------------------------------------------------- command
@app.command(
    "extend",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def extend_cli(
    ctx: typer.Context,
    input_path: Path = typer.Argument(..., exists=True, dir_okay=False, help="Training .spacy DocBin."),
    output_path: Path = typer.Argument(..., dir_okay=False, help="Fused .spacy DocBin to write."),
    config_path: Optional[Path] = typer.Option(
        None, "--config", "-c", exists=True, dir_okay=False,
        help="spaCy config of the knowledge pipeline, e.g. one written by knowfree init extend-config "
        "(--source lexicon|smollm2|openai|lexicon+llm; in a checkout also configs/extend_*.cfg). Settings can be "
        "overridden like in spacy train: --vars.endpoint http://127.0.0.1:8000/v1/chat/completions "
        "--paths.cache cache/llm_replies.jsonl. Default: the offline jieba lexicon."),
    families: List[str] = typer.Option(
        ["SEG", "POS", "ENT"], "--family", help="Lexicon families to add (repeatable)."),
    user_dict: Optional[Path] = typer.Option(
        None, "--user-dict", exists=True, dir_okay=False, help="Lexicon: jieba user dictionary."),
    batch_size: int = typer.Option(32, "--batch-size", help="Docs per pipeline batch."),
    retry_failed: bool = typer.Option(
        False, "--retry-failed", help="Ask the LLM again for the prompts recorded in the response cache "
        "as dropped (refused, filtered or empty replies) or cut (too_long)."),
    unlabeled: bool = typer.Option(
        False, "--unlabeled", help="Flag every output doc as unlabeled text "
        "(doc.user_data['knowfree_unlabeled']): the knowfree component trains only its extension "
        "spans, never its (absent) gold spans. Refused for docs that carry gold spans."),
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
    start = time.time()
    try:
        nlp = build_knowledge_pipeline(config_path, families, user_dict, overrides)
    except ValueError as err:  # KF messages of the config, backends and cache: no traceback
        msg.fail(_redacted(err), exits=1)
    _set_retry_failed(nlp, retry_failed)
    msg.info(f"Knowledge pipeline: {nlp.pipe_names}")
    try:
        docs = read_docbin(input_path, nlp.vocab)
    except ValueError as err:
        msg.fail(str(err), exits=1)
    if unlabeled:
        labelled = sum(1 for doc in docs if any(len(group) for key, group in doc.spans.items()
                                               if key != EXTENSION_SPANS_KEY))
        if labelled:
            msg.fail(Errors.KF276.format(path=input_path, count=labelled), exits=1)
        for doc in docs:
            doc.user_data[UNLABELED_FLAG] = True
    labels_before = _label_counts(docs)
    stats_before = _stats_summary(docs)
    out = DocBin(store_user_data=True)
    done: List[Doc] = []
    try:
        for doc in tqdm(nlp.pipe(docs, batch_size=batch_size), total=len(docs), desc="extend",
                        unit="doc"):
            if doc.spans.get(EXTENSION_SPANS_KEY) is None:
                doc.spans[EXTENSION_SPANS_KEY] = []
            done.append(doc)
            out.add(doc)
    except KeyboardInterrupt:
        _report_stop(nlp, len(done), len(docs), "interrupted", output_path)
        raise typer.Exit(code=130)
    except ConnectionError as err:  # the backends' BackendRequestError: no traceback needed
        _report_stop(nlp, len(done), len(docs), f"{type(err).__name__}: {err}", output_path)
        raise typer.Exit(code=1)
    except Exception as err:
        _report_stop(nlp, len(done), len(docs), f"{type(err).__name__}: {err}", output_path)
        with contextlib.suppress(AttributeError):
            err.knowfree_reported = True  # KF275 said it: main() prints no second message
        raise
    output_path.parent.mkdir(parents=True, exist_ok=True)
    out.to_disk(output_path)
    elapsed = time.time() - start
    msg.good(f"Wrote {len(docs)} docs to {output_path} in {elapsed:.1f}s")
    _print_summary(nlp, docs, labels_before, stats_before, elapsed)


def _report_stop(nlp: Language, done: int, total: int, reason: str, output_path: Path) -> None:
    """Say how far a stopped run got and what a rerun will reuse."""
    files = response_cache_files(nlp)
    if files:
        cached = "LLM replies received so far are kept in " + ", ".join(
            f"{path} ({_count_lines(path)} replies)" for path in files
        ) + "; run the same command again to continue: cached prompts are not asked again."
    elif llm_backends(nlp):
        cached = "No response cache is configured, so a rerun asks the LLM for everything again."
    else:
        cached = ""
    _print_llm_calls(nlp)
    _print_dropped(nlp, [])
    msg.fail(Errors.KF275.format(done=done, total=total, error=_redacted(reason), output=output_path,
                                 cached=cached).rstrip())


def _print_llm_calls(nlp: Language) -> Dict[str, int]:
    rows, total, uncounted = llm_call_rows(nlp)
    if not rows:
        return total
    msg.table(rows, header=("llm component", "backend", "calls made", "from cache", "failed"),
              divider=True, aligns=("l", "l", "r", "r", "r"))
    line = (f"LLM calls: {total['made']} made, {total['cached']} answered from cache, "
            f"{total['failed']} failed")
    if uncounted:
        line += f" (not counted: {', '.join(uncounted)}, whose model has no call counter)"
    if total.get("dropped"):
        line += f"; {total['dropped']} prompt(s) dropped"
    typer.echo(line)
    return total


def _print_summary(nlp: Language, docs: List[Doc], labels_before: Counter,
                   stats_before: Dict[str, Counter], elapsed: float) -> None:
    labels_after = _label_counts(docs)
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
        header=("family", "spans", "added"), divider=True, aligns=("l", "r", "r"),
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
