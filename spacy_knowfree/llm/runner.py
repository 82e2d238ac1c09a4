"""One reply per prompt from any spacy-llm model, through the response cache.

:class:`LLMRunner` is how every text-generating caller asks an LLM:
enriched explanation synthesis, the peer augmenters and ``knowfree
merge-labels`` (P_merge). It gives the package's own backends the response
cache (:mod:`.cache`) and wraps any other ``llm_models`` model with it, so an
interrupted run asks only for the prompts it has no reply for.
"""

import hashlib
import json
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import spacy
from spacy_llm.registry import registry as llm_registry
from thinc.api import Config

from ..errors import Errors
from .cache import ResponseCache, cache_key
from .model_config import find_model_block

PathLike = Union[str, Path]


class LLMRunner:
    """Ask a spacy-llm model one reply per prompt, through a response cache.

    The package's own backends (``spacy-knowfree.LocalCausalLM.v1``,
    ``spacy-knowfree.OpenAICompatible.v1``) cache replies themselves: a
    runner gives them ``cache`` when they have none. Any other ``llm_models``
    model is wrapped: the runner looks each prompt up in ``cache`` itself and
    stores the replies. Either way an interrupted run asks only for the
    prompts it has no reply for.

    Counts (``counts``): prompts asked, sent to the LLM ("made") and
    answered from the cache.
    """

    def __init__(self, model: Callable, cache: Optional[ResponseCache] = None, model_id: Optional[str] = None):
        """model (Callable): a spacy-llm model (prompts per doc -> replies per doc).
        cache (Optional[ResponseCache]): the reply cache to use when the model has none.
        model_id (Optional[str]): identifies the model in cache keys of wrapped models
            (default: its class name).
        """
        self.model = model
        self.native = hasattr(model, "cache")
        if self.native and getattr(model, "cache", None) is None and cache is not None:
            model.cache = cache  # type: ignore[attr-defined]
        self.cache: Optional[ResponseCache] = getattr(model, "cache", None) if self.native else cache
        self.model_id = model_id or f"{type(model).__module__}.{type(model).__qualname__}"
        self.counts = {"prompts": 0, "made": 0, "cached": 0}

    def _ask(self, prompts: List[str]) -> List[str]:
        replies = [list(r) for r in self.model([[p] for p in prompts])]
        if len(replies) != len(prompts) or any(len(r) != 1 for r in replies):
            raise ValueError(Errors.KF303.format(got=[len(r) for r in replies], expected=len(prompts)))
        return [str(r[0]) for r in replies]

    def __call__(self, prompts: Sequence[str]) -> List[str]:
        """One reply per prompt, in order.

        prompts (Sequence[str]): the prompts.
        RETURNS (List[str]): the replies.
        """
        prompts = list(prompts)
        if not prompts:
            return []
        distinct = list(dict.fromkeys(prompts))
        self.counts["prompts"] += len(distinct)
        if self.native:
            calls = getattr(self.model, "calls", None)
            cache = self.cache
            before = (
                (calls.made, calls.cached)
                if calls is not None
                else ((cache.added, cache.hits) if cache is not None else (0, 0))
            )
            answers = dict(zip(distinct, self._ask(distinct)))
            if calls is not None:
                made, cached = calls.made - before[0], calls.cached - before[1]
            elif cache is not None:
                made, cached = cache.added - before[0], cache.hits - before[1]
            else:
                made, cached = len(distinct), 0
            self.counts["made"] += made
            self.counts["cached"] += cached
            return [answers[p] for p in prompts]
        answers = {}
        keys = {p: cache_key("llm-runner", self.model_id, p, {}) for p in distinct}
        todo = []
        for prompt in distinct:
            hit = self.cache.get(keys[prompt]) if self.cache is not None else None
            if hit is None:
                todo.append(prompt)
            else:
                answers[prompt] = hit
        self.counts["cached"] += len(distinct) - len(todo)
        if todo:
            for prompt, reply in zip(todo, self._ask(todo)):
                answers[prompt] = reply
                if self.cache is not None:
                    self.cache.put(keys[prompt], reply, {"backend": "llm-runner", "model": self.model_id})
            self.counts["made"] += len(todo)
        return [answers[p] for p in prompts]


def _config_id(block: Any) -> str:
    payload = json.dumps(block, ensure_ascii=False, sort_keys=True, default=str)
    return "config:" + hashlib.sha256(payload.encode("utf8")).hexdigest()[:16]


def read_llm_config(path: PathLike, overrides: Optional[Dict[str, Any]] = None) -> Config:
    """Read an LLM config: a ``[model]`` block (or a knowledge pipeline with
    ``llm`` components) and optional task blocks; ``overrides`` as in
    ``spacy train`` (``{"vars.endpoint": ...}``)."""
    return spacy.util.load_config(Path(path), overrides=overrides or {}, interpolate=True)


def find_llm_model_block(
    config: Config, section: Optional[str] = None, path: PathLike = "the config"
) -> Dict[str, Any]:
    """The ``@llm_models`` block of an LLM config (see
    :func:`spacy_knowfree.llm.model_config.find_model_block`); raises
    KF301 naming ``path`` when there is none."""
    try:
        return find_model_block(config, section)[1]
    except KeyError:
        raise ValueError(Errors.KF301.format(path=path)) from None


def build_llm_runner(
    config: Optional[Config] = None,
    *,
    cache_path: Optional[PathLike] = None,
    default_model: Optional[Dict[str, Any]] = None,
    model_section: Optional[str] = None,
) -> LLMRunner:
    """The runner for a config's ``@llm_models`` block, or for the embedded SmolLM2.

    config (Optional[Config]): from :func:`read_llm_config`; None uses
        ``spacy-knowfree.LocalCausalLM.v1`` with ``default_model`` settings.
    cache_path (Optional[PathLike]): response cache used when the model has none.
    default_model (Optional[Dict[str, Any]]): settings of the default backend.
    model_section (Optional[str]): dotted section of the model block (see
        :func:`find_llm_model_block`).
    RETURNS (LLMRunner): the runner.
    """
    if config is None:
        block: Dict[str, Any] = {"@llm_models": "spacy-knowfree.LocalCausalLM.v1", **(default_model or {})}
    else:
        block = find_llm_model_block(config, model_section)
    model = _resolve_model(block)
    cache = ResponseCache(cache_path) if cache_path is not None else None
    return LLMRunner(model, cache=cache, model_id=_config_id(block))


def runner_for_model_block(block: Dict[str, Any], *, cache_path: Optional[PathLike] = None) -> LLMRunner:
    """The runner for one ``@llm_models`` block (from
    :func:`~spacy_knowfree.llm.model_config.find_model_block`).

    block (Dict[str, Any]): the model block; nothing is contacted or loaded.
    cache_path (Optional[PathLike]): response cache, opened only when the
        model has no cache of its own.
    RETURNS (LLMRunner): the runner.
    """
    model = _resolve_model(block)
    cache = ResponseCache(cache_path) if cache_path is not None and getattr(model, "cache", None) is None else None
    return LLMRunner(model, cache=cache, model_id=_config_id(block))


def _resolve_model(block: Dict[str, Any]) -> Any:
    """The spacy-llm model a ``@llm_models`` block builds."""
    return llm_registry.resolve(Config({"model": block}), validate=True)["model"]


def resolve_task(config: Optional[Config], section: str, expected: type, default: Callable[[], Any]) -> Any:
    """The task built from ``[section]`` of an LLM config, else ``default()``."""
    if config is None or section not in config:
        return default()
    task = llm_registry.resolve(Config({"task": dict(config[section])}), validate=True)["task"]
    if not isinstance(task, expected):
        raise ValueError(
            Errors.KF302.format(
                section=section, path="the LLM config", expected=expected.__name__, got=type(task).__name__
            )
        )
    return task
