"""``knowfree extend``: add extension spans (pipeline 1) to a training DocBin."""
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

from ..errors import Errors
from ._app import app

EXTENSION_SPANS_KEY = "knowfree_ext"


def _import_llm_tasks() -> None:
    """Register the spacy-knowfree llm tasks and models (also when the package
    is used from a checkout, without its entry points installed)."""
    try:
        import spacy_knowfree.llm_tasks  # noqa: F401
    except ImportError:  # spacy-llm not installed: configs without llm components still work
        pass


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
        _import_llm_tasks()
        config = spacy.util.load_config(config_path, overrides=overrides or {}, interpolate=True)
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
    total = {"made": 0, "cached": 0, "failed": 0}
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
        help="spaCy config of the knowledge pipeline, e.g. configs/extend_smollm2.cfg or "
        "configs/extend_openai.cfg (llm components with spacy-knowfree tasks). Settings can be "
        "overridden like in spacy train: --vars.endpoint http://127.0.0.1:8000/v1/chat/completions "
        "--paths.cache cache/llm_replies.jsonl. Default: the offline jieba lexicon."),
    families: List[str] = typer.Option(
        ["SEG", "POS", "ENT"], "--family", help="Lexicon families to add (repeatable)."),
    user_dict: Optional[Path] = typer.Option(
        None, "--user-dict", exists=True, dir_okay=False, help="Lexicon: jieba user dictionary."),
    batch_size: int = typer.Option(32, "--batch-size", help="Docs per pipeline batch."),
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
    nlp = build_knowledge_pipeline(config_path, families, user_dict, overrides)
    msg.info(f"Knowledge pipeline: {nlp.pipe_names}")
    docbin = DocBin().from_disk(input_path)
    docs = list(docbin.get_docs(nlp.vocab))
    if not docs:
        msg.fail(Errors.KF008.format(path=input_path), exits=1)
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
    msg.fail(Errors.KF275.format(done=done, total=total, error=reason, output=output_path,
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
