"""The knowledge pipeline of KnowFREE pipeline 1 (section 3.1): what writes
extension spans, and the accounting of its LLM calls.

:func:`build_knowledge_pipeline` loads a user config (e.g. an ``llm``
component with the spacy-knowfree tasks) or, without one, the offline jieba
lexicon (:mod:`.lexicon`). ``knowfree extend``, the synthesizer and the
benchmarks all fuse knowledge through it. The other functions read, from a
built pipeline, the calls each LLM component made, its response cache files
and the prompts it dropped, for the command line summaries.
"""

from collections import Counter
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import spacy
from spacy.language import Language
from spacy.tokens import Doc

from ..constants import EXTENSION_SPANS_KEY
from ..errors import Errors

PathLike = Union[str, Path]


def _import_llm_registry(config: Optional[Dict[str, Any]] = None) -> None:
    """Register the spacy-knowfree llm tasks and models (also when the package
    is used from a checkout, without its entry points installed). Without
    spacy-llm, a ``config`` that uses it raises KF600 naming the extra."""
    try:
        import spacy_knowfree.llm  # noqa: F401
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
    config_path: Optional[PathLike],
    families: Sequence[str],
    user_dict: Optional[PathLike],
    overrides: Optional[Dict[str, Any]] = None,
) -> Language:
    """The pipeline that writes extension spans: a user config (e.g. an ``llm``
    component with the spacy-knowfree tasks) or the offline jieba lexicon.

    config_path (Optional[PathLike]): knowledge pipeline config; None (or "") for the lexicon.
    families (Sequence[str]): lexicon families (only without a config).
    user_dict (Optional[PathLike]): jieba user dictionary (only without a config).
    overrides (Optional[Dict[str, Any]]): config overrides such as
        ``{"vars.endpoint": "http://127.0.0.1:8000/v1/chat/completions"}``.
    RETURNS (Language): the initialized pipeline.
    """
    if config_path:
        config_path = Path(config_path)
        _check_overrides(config_path, overrides)
        config = spacy.util.load_config(config_path, overrides=overrides or {}, interpolate=True)
        _import_llm_registry(config)
        nlp = spacy.util.load_model_from_config(config, auto_fill=True, validate=True)
        nlp.initialize()
        return nlp
    nlp = spacy.blank("zh")
    nlp.add_pipe(
        "knowfree_lexicon",
        config={
            "spans_key": EXTENSION_SPANS_KEY,
            "families": list(families),
            "user_dict": str(user_dict) if user_dict else None,
        },
    )
    return nlp


def redacted_error(err: Any) -> str:
    """The message of ``err`` without URL credentials (config errors echo the endpoint)."""
    try:
        from ..llm.models.endpoint import redact
    except ImportError:  # no spacy-llm: no LLM endpoint in the message
        return str(err)
    return redact(err)


def _check_overrides(config_path: Path, overrides: Optional[Dict[str, Any]]) -> None:
    """Refuse ``--vars.x``/``--paths.x`` overrides the config has no setting for (KF211)."""
    try:
        from ..llm.model_config import check_overrides
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
        rows.append(
            (name, backend, str(counts.get("made", 0)), str(counts.get("cached", 0)), str(counts.get("failed", 0)))
        )
    return rows, total, uncounted


def response_cache_files(nlp: Language) -> List[Path]:
    """The distinct response cache files used by the llm components."""
    files: Dict[str, Path] = {}
    for _, model in llm_backends(nlp):
        path = getattr(getattr(model, "cache", None), "path", None)
        if path is not None:
            files.setdefault(str(Path(path).resolve()), Path(path))
    return list(files.values())


def set_retry_failed(nlp: Language, retry: bool) -> None:
    """Make the response caches ask again (or not) for prompts recorded as dropped or cut."""
    for _, model in llm_backends(nlp):  # none without spacy-llm: the import below is safe
        from ..llm.cache import retry_failed_from_env

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


def extension_label_counts(docs: Iterable[Doc]) -> Counter:
    """How many extension spans (``doc.spans["knowfree_ext"]``) carry each label."""
    counts: Counter = Counter()
    for doc in docs:
        group = doc.spans.get(EXTENSION_SPANS_KEY)
        if group is not None:
            counts.update(span.label_ for span in group)
    return counts
