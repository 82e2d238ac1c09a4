"""A spacy-llm model for any OpenAI-compatible chat-completions endpoint.

vLLM, Ollama, llama.cpp's server, LM Studio and hosted APIs all accept
``POST <endpoint>`` with ``{"model", "messages", ...}``. Unlike spacy-llm's
built-in OpenAI models this backend

* calls exactly ``endpoint`` and nothing else (no key check against a public
  API, no model listing);
* sends an ``Authorization: Bearer`` header only when the environment
  variable *named* by ``api_key_env`` holds a key;
* retries timeouts, connection errors, HTTP 408/429 and 5xx with exponential
  backoff, honouring ``Retry-After``; other 4xx fail at once;
* sends ``concurrency`` requests in parallel (a thread pool);
* stores each reply in the response cache the moment it arrives, and when a
  prompt finally fails, stops starting new requests, lets running ones finish
  (and be cached) and raises an error naming the endpoint, the status and how
  many prompts were done, so a rerun only asks for the rest.

Proxies: requests' usual ``HTTP(S)_PROXY``/``NO_PROXY`` variables apply.
"""
import email.utils
import logging
import os
import threading
import time
import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from typing import Any, Dict, Iterable, Optional, Tuple

import requests

from spacy_llm.registry import registry

from ..errors import Errors, Warnings
from .response_cache import LLMCallCounts, PendingPrompts, ResponseCache

logger = logging.getLogger("spacy_knowfree.llm")

BACKEND_NAME = "OpenAICompatible"
_RETRY_STATUS = frozenset({408, 429})


class BackendRequestError(ConnectionError):
    """A prompt failed for good; ``done`` of ``total`` prompts had replies."""

    def __init__(self, message: str, *, endpoint: str, status: Optional[int], done: int, total: int):
        super().__init__(message)
        self.endpoint = endpoint
        self.status = status
        self.done = done
        self.total = total


class _Failure(Exception):
    """Internal: one prompt failed (after retries, or at once for 4xx)."""

    def __init__(self, reason: str, attempts: int, status: Optional[int], message: Optional[str] = None):
        super().__init__(reason)
        self.reason = reason
        self.attempts = attempts
        self.status = status
        self.message = message


def _retry_after(value: Optional[str]) -> Optional[float]:
    """Seconds to wait from a ``Retry-After`` header (seconds or HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class OpenAICompatibleModel:
    """spacy-llm model: ``__call__`` maps prompts per doc to replies per doc."""

    def __init__(
        self,
        endpoint: str,
        model: str,
        *,
        api_key_env: Optional[str] = None,
        temperature: float = 0.0,
        max_tokens: int = 512,
        timeout: float = 60.0,
        max_retries: int = 5,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
        concurrency: int = 4,
        system_prompt: Optional[str] = None,
        extra_params: Optional[Dict[str, Any]] = None,
        headers: Optional[Dict[str, str]] = None,
        context_length: Optional[int] = None,
        cache: Optional[ResponseCache] = None,
    ):
        """See :func:`make_openai_compatible_model`."""
        checks = [
            ("endpoint", endpoint, isinstance(endpoint, str) and endpoint.startswith(("http://", "https://")),
             "Give the full URL of the chat completions route, e.g. http://127.0.0.1:8000/v1/chat/completions."),
            ("concurrency", concurrency, isinstance(concurrency, int) and concurrency >= 1, "Use 1 or more."),
            ("max_retries", max_retries, isinstance(max_retries, int) and max_retries >= 0, "Use 0 or more."),
            ("timeout", timeout, timeout > 0, "Use a positive number of seconds."),
            ("backoff", backoff, backoff >= 0 and max_backoff >= 0, "Use non-negative seconds."),
            ("max_tokens", max_tokens, isinstance(max_tokens, int) and max_tokens >= 1, "Use 1 or more."),
        ]
        for arg, value, ok, hint in checks:
            if not ok:
                raise ValueError(Errors.KF204.format(arg=arg, backend=BACKEND_NAME, value=value, hint=hint))
        self.endpoint = endpoint
        self.model = model
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.concurrency = concurrency
        self.system_prompt = system_prompt
        self.extra_params = dict(extra_params or {})
        self.cache = cache
        self._context_length = context_length
        self._headers = {"Content-Type": "application/json", **(headers or {})}
        api_key = os.environ.get(api_key_env, "") if api_key_env else ""
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        elif api_key_env:
            warnings.warn(Warnings.KW200.format(backend=BACKEND_NAME, env=api_key_env, endpoint=endpoint))
        self._local = threading.local()
        #: Prompts sent vs answered from the cache, over this object's life.
        self.calls = LLMCallCounts()

    @property
    def context_length(self) -> Optional[int]:
        """Prompt budget in tokens for spacy-llm's sharding (context minus ``max_tokens``)."""
        if not self._context_length:
            return None
        return max(1, self._context_length - self.max_tokens)

    @property
    def backend_id(self) -> str:
        return f"openai-compatible@{self.endpoint}"

    def generation_params(self) -> Dict[str, Any]:
        """Everything besides the prompt that shapes a reply (part of the cache key)."""
        return {
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "system_prompt": self.system_prompt,
            "extra_params": self.extra_params,
        }

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            self._local.session = session
        return session

    def _body(self, prompt: str) -> Dict[str, Any]:
        messages = []
        if self.system_prompt:
            messages.append({"role": "system", "content": self.system_prompt})
        messages.append({"role": "user", "content": prompt})
        body: Dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }
        body.update(self.extra_params)
        return body

    def _delay(self, attempt: int, retry_after: Optional[float]) -> float:
        if retry_after is not None:
            return min(retry_after, self.max_backoff)
        return min(self.backoff * (2 ** (attempt - 1)), self.max_backoff)

    def _request(self, prompt: str) -> Tuple[str, bool]:
        """Ask for one prompt, retrying. RETURNS (Tuple[str, bool]): reply, cut at max_tokens."""
        body = self._body(prompt)
        attempt = 0
        while True:
            attempt += 1
            retry_after = None
            try:
                resp = self._session().post(self.endpoint, json=body, headers=self._headers, timeout=self.timeout)
            except requests.Timeout:
                reason, status = f"timed out after {self.timeout:g} s", None
            except requests.ConnectionError as err:
                reason, status = f"connection error ({type(err).__name__})", None
            else:
                status = resp.status_code
                if status == 200:
                    try:
                        return self._read(resp)
                    except _Failure as err:
                        err.attempts = attempt
                        raise
                reason = f"HTTP {status} {resp.reason or ''}".strip()
                if status not in _RETRY_STATUS and status < 500:
                    raise _Failure(reason, attempt, status)
                retry_after = _retry_after(resp.headers.get("Retry-After"))
            if attempt > self.max_retries:
                raise _Failure(reason, attempt, status)
            delay = self._delay(attempt, retry_after)
            logger.debug("%s: %s; retry %d/%d in %.2f s", self.endpoint, reason, attempt, self.max_retries, delay)
            time.sleep(delay)

    def _read(self, resp: requests.Response) -> Tuple[str, bool]:
        try:
            data = resp.json()
            choice = data["choices"][0]
            content = choice["message"]["content"]
            if not isinstance(content, str):
                raise TypeError(type(content).__name__)
        except (ValueError, KeyError, IndexError, TypeError) as err:
            message = Errors.KF203.format(
                backend=BACKEND_NAME, endpoint=self.endpoint, status=resp.status_code, excerpt=resp.text[:300]
            )
            raise _Failure(f"unreadable reply ({err})", 1, resp.status_code, message) from err
        return content, choice.get("finish_reason") == "length"

    def __call__(self, prompts: Iterable[Iterable[str]]) -> Iterable[Iterable[str]]:
        """Reply to every prompt (cached replies are not asked again).

        prompts (Iterable[Iterable[str]]): prompts per doc (one per shard).
        RETURNS (Iterable[Iterable[str]]): replies per doc, in the same order.
        """
        pending = PendingPrompts(prompts, self.cache, self.backend_id, self.model,
                                 self.generation_params())
        todo, replies, keys = pending.todo, pending.replies, pending.keys
        self.calls.cached += len(replies)
        failure: Optional[_Failure] = None
        cut = 0
        if todo:
            # At most `concurrency` requests in flight; after a failure no new
            # request starts, running ones finish and are cached.
            queue = iter(todo)
            in_flight: Dict[Future, str] = {}
            with ThreadPoolExecutor(max_workers=min(self.concurrency, len(todo))) as pool:

                def submit_next() -> None:
                    prompt = next(queue, None)
                    if prompt is not None:
                        in_flight[pool.submit(self._request, prompt)] = prompt

                for _ in range(self.concurrency):
                    submit_next()
                while in_flight:
                    finished, _ = wait_futures(list(in_flight), return_when="FIRST_COMPLETED")
                    for future in finished:
                        prompt = in_flight.pop(future)
                        try:
                            text, was_cut = future.result()
                        except _Failure as err:
                            failure = failure or err
                            self.calls.failed += 1
                            continue
                        self.calls.made += 1
                        pending.answer(prompt, text)
                        cut += int(was_cut)
                        if failure is None:
                            submit_next()
        total = len(keys)
        if cut:
            warnings.warn(Warnings.KW201.format(
                backend=BACKEND_NAME, count=cut, total=len(todo), limit=self.max_tokens, arg="max_tokens"
            ))
        if failure is not None:
            kept = (
                f"; their replies are kept in the response cache {self.cache.path}, so a rerun asks only for the rest"
                if self.cache is not None
                else "; configure a response cache (spacy-knowfree.ResponseCache.v1) to keep replies across runs"
            )
            message = Errors.KF202.format(
                backend=BACKEND_NAME, endpoint=self.endpoint, attempts=failure.attempts,
                reason=failure.reason, done=len(replies), total=total, kept=kept,
            )
            if failure.message:
                message = failure.message + "\n" + message
            raise BackendRequestError(
                message, endpoint=self.endpoint, status=failure.status, done=len(replies), total=total
            )
        return pending.in_order()


@registry.llm_models("spacy-knowfree.OpenAICompatible.v1")
def make_openai_compatible_model(
    endpoint: str,
    model: str,
    api_key_env: Optional[str] = None,
    temperature: float = 0.0,
    max_tokens: int = 512,
    timeout: float = 60.0,
    max_retries: int = 5,
    backoff: float = 1.0,
    max_backoff: float = 60.0,
    concurrency: int = 4,
    system_prompt: Optional[str] = None,
    extra_params: Dict[str, Any] = {},
    headers: Dict[str, str] = {},
    context_length: Optional[int] = None,
    cache: Optional[ResponseCache] = None,
) -> OpenAICompatibleModel:
    """Chat completions from an OpenAI-compatible server.

    endpoint (str): full URL of the chat completions route; the only address called.
    model (str): model name sent in the request body.
    api_key_env (Optional[str]): NAME of the environment variable holding the
        API key; no key, no Authorization header.
    temperature (float): sampling temperature.
    max_tokens (int): most tokens per reply.
    timeout (float): seconds to wait for a reply before retrying.
    max_retries (int): retries after the first attempt.
    backoff (float): first retry delay in seconds, doubled each retry.
    max_backoff (float): longest delay, also the cap on Retry-After.
    concurrency (int): requests in flight at once.
    system_prompt (Optional[str]): optional system message.
    extra_params (Dict[str, Any]): more body fields (top_p, seed, stop, ...).
    headers (Dict[str, str]): extra HTTP headers.
    context_length (Optional[int]): the model's context in tokens; enables
        spacy-llm's sharding of long docs.
    cache (Optional[ResponseCache]): reply cache (spacy-knowfree.ResponseCache.v1).
    RETURNS (OpenAICompatibleModel): the model.
    """
    return OpenAICompatibleModel(
        endpoint, model, api_key_env=api_key_env, temperature=temperature, max_tokens=max_tokens,
        timeout=timeout, max_retries=max_retries, backoff=backoff, max_backoff=max_backoff,
        concurrency=concurrency, system_prompt=system_prompt, extra_params=extra_params,
        headers=headers, context_length=context_length, cache=cache,
    )
