"""A spacy-llm model for any OpenAI-compatible chat-completions endpoint.

vLLM, Ollama, llama.cpp's server, LM Studio and hosted APIs all accept
``POST <endpoint>`` with ``{"model", "messages", ...}``. Unlike spacy-llm's
built-in OpenAI models this backend

* calls exactly ``endpoint`` and nothing else (no key check against a public
  API, no model listing); the URL is checked when the model is built;
* sends an ``Authorization: Bearer`` header only when the environment
  variable *named* by ``api_key_env`` holds a key; credentials in the URL
  (userinfo, query string) never reach the cache key or a message;
* retries timeouts, connection errors (resets, cut-off bodies), unreadable
  bodies, HTTP 408/429 and 5xx with exponential backoff, honouring
  ``Retry-After``;
* records a prompt the server refuses (HTTP 400/413/422) or answers without
  text (``content: null``, ``finish_reason: content_filter``) as a *dropped*
  item with the reason and the server's message, and goes on; other 4xx
  (401, 403, 404 ...) stop the run with the server's message;
* cuts replies longer than ``max_reply_chars`` (recorded as ``too_long``)
  and never reads more than a bounded body;
* sends ``concurrency`` requests in parallel (daemon worker threads); each
  worker appends its reply to the response cache the moment it arrives;
* when a prompt finally fails, stops starting new requests, lets running ones
  finish (and be cached) and raises an error naming the endpoint, the status
  and how many prompts were done, so a rerun only asks for the rest;
* on Ctrl-C, stops starting requests, gives running ones a few seconds to
  arrive (and be cached) and re-raises without waiting for the others.

Proxies: requests' usual ``HTTP(S)_PROXY``/``NO_PROXY`` variables apply.
"""

import http.client
import json
import logging
import os
import queue
import threading
import time
import warnings
from collections import Counter
from typing import Any, Dict, Iterable, List, Optional, Tuple

import requests
from spacy_llm.registry import registry

from ...errors import Errors, Warnings
from ..cache import LLMCallCounts, PendingPrompts, ResponseCache
from .endpoint import check_api_key_env, check_endpoint, public_endpoint, redact, server_message
from .http_outcomes import (  # noqa: F401  (BackendRequestError, DROP_HINTS: importable from here too)
    BACKEND_NAME,
    CONTEXT_LENGTH_RE,
    DROP_HINTS,
    HTTP_HINTS,
    NOT_RETRIED,
    PER_PROMPT_STATUS,
    RETRY_STATUS,
    BackendRequestError,
    PromptRefused,
    RequestFailure,
    RunStopped,
    content_prefix,
    is_dropped,
    retry_after_seconds,
)

logger = logging.getLogger("spacy_knowfree.llm")


class OpenAICompatibleModel:
    """spacy-llm model: ``__call__`` maps prompts per doc to replies per doc
    (registered as ``spacy-knowfree.OpenAICompatible.v1``)."""

    #: seconds that running requests get to arrive after Ctrl-C
    interrupt_grace: float = 2.0

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
        extra_params: Dict[str, Any] = {},
        headers: Dict[str, str] = {},
        context_length: Optional[int] = None,
        cache: Optional[ResponseCache] = None,
        max_reply_chars: int = 200_000,
    ):
        """Chat completions from an OpenAI-compatible server.

        endpoint (str): full URL of the chat completions route; the only address called.
        model (str): model name sent in the request body.
        api_key_env (Optional[str]): NAME of the environment variable holding the
            API key; no key, no Authorization header.
        temperature (float): sampling temperature.
        max_tokens (int): most tokens per reply (sent as ``max_tokens``).
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
        max_reply_chars (int): longest reply kept; longer ones are cut there and
            recorded as ``too_long``.
        """
        self.endpoint = check_endpoint(endpoint, BACKEND_NAME)
        checks = [
            ("concurrency", concurrency, isinstance(concurrency, int) and concurrency >= 1, "Use 1 or more."),
            ("max_retries", max_retries, isinstance(max_retries, int) and max_retries >= 0, "Use 0 or more."),
            ("timeout", timeout, timeout > 0, "Use a positive number of seconds."),
            ("backoff", backoff, backoff >= 0 and max_backoff >= 0, "Use non-negative seconds."),
            ("max_tokens", max_tokens, isinstance(max_tokens, int) and max_tokens >= 1, "Use 1 or more."),
            (
                "max_reply_chars",
                max_reply_chars,
                isinstance(max_reply_chars, int) and max_reply_chars >= 1,
                "Use 1 or more characters.",
            ),
        ]
        for arg, value, ok, hint in checks:
            if not ok:
                raise ValueError(Errors.KF204.format(arg=arg, backend=BACKEND_NAME, value=value, hint=hint))
        api_key_env = check_api_key_env(api_key_env, BACKEND_NAME)
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
        self.max_reply_chars = max_reply_chars
        self._max_body = 8 * max_reply_chars + (1 << 20)
        self._context_length = context_length
        self._headers = {"Content-Type": "application/json", **(headers or {})}
        api_key = os.environ.get(api_key_env, "") if api_key_env else ""
        self._secrets = [api_key] if api_key else []
        #: the endpoint as shown in messages (no userinfo, no query)
        self.display_endpoint = redact(self.endpoint)
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        elif api_key_env:
            warnings.warn(
                Warnings.KW200.format(backend=BACKEND_NAME, env=api_key_env, endpoint=self.display_endpoint),
                stacklevel=2,
            )
        self._local = threading.local()
        #: Prompts sent vs answered from the cache, over this object's life.
        self.calls = LLMCallCounts()
        #: Prompts without a clean reply, per doc: {"doc", "reason", "message", "cached"}.
        self.dropped: List[Dict[str, Any]] = []
        self._docs_seen = 0
        self._refused = 0
        self._answered = False
        self._count_lock = threading.Lock()

    @property
    def context_length(self) -> Optional[int]:
        """Prompt budget in tokens for spacy-llm's sharding (context minus ``max_tokens``)."""
        if not self._context_length:
            return None
        return max(1, self._context_length - self.max_tokens)

    @property
    def backend_id(self) -> str:
        """Part of the cache key: the endpoint without credentials, query or fragment."""
        return f"openai-compatible@{public_endpoint(self.endpoint)}"

    def generation_params(self) -> Dict[str, Any]:
        """Everything besides the prompt that shapes a reply (part of the cache key)."""
        return {name: getattr(self, name) for name in ("temperature", "max_tokens", "system_prompt", "extra_params")}

    def _redact(self, text: Any) -> str:
        return redact(text, self._secrets)

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

    def _post(self, body: Dict[str, Any]) -> Tuple[int, str, Any, bytes, bool]:
        """One POST. RETURNS: status, reason, headers, body (at most the size
        cap) and whether the body was longer than the cap."""
        resp = self._session().post(self.endpoint, json=body, headers=self._headers, timeout=self.timeout, stream=True)
        try:
            data = bytearray()
            deadline = time.monotonic() + self.timeout
            for chunk in resp.iter_content(chunk_size=1 << 16):
                data += chunk
                if len(data) > self._max_body:
                    return resp.status_code, resp.reason or "", resp.headers, bytes(data), True
                if time.monotonic() > deadline:
                    raise requests.Timeout("reading the body took too long")
            return resp.status_code, resp.reason or "", resp.headers, bytes(data), False
        finally:
            resp.close()

    def _request(self, prompt: str, stop: threading.Event) -> Tuple[Optional[str], Optional[str], bool]:
        """Ask for one prompt, retrying. RETURNS: content, finish_reason, body over the cap.

        Raises ``PromptRefused`` (drop this prompt), ``RequestFailure`` (stop the run)
        or ``RunStopped``.
        """
        body = self._body(prompt)
        attempt = 0
        while True:
            attempt += 1
            retry_after = None
            message = None
            try:
                status, why, headers, raw, over = self._post(body)
            except requests.Timeout:
                reason, status = f"timed out after {self.timeout:g} s", None
            except NOT_RETRIED as err:
                raise RequestFailure(f"invalid request ({type(err).__name__})", attempt, None) from None
            except (requests.RequestException, http.client.HTTPException, OSError) as err:
                reason, status = f"connection error ({type(err).__name__})", None
            else:
                if status == 200:
                    if over:
                        return content_prefix(raw, self.max_reply_chars), None, True
                    try:
                        data = json.loads(raw)
                    except ValueError:  # cut off, or not JSON at all (an HTML page): retried
                        reason = "unreadable reply (not JSON)"
                        message = Errors.KF203.format(
                            backend=BACKEND_NAME,
                            endpoint=self.display_endpoint,
                            status=status,
                            excerpt=self._redact(raw[:300].decode("utf8", "replace")),
                        )
                    else:
                        try:
                            return self._read(data)
                        except RequestFailure as err:
                            err.attempts = attempt
                            raise
                else:
                    assert status is not None  # _post() returned: the server answered
                    server = self._redact(server_message(raw))
                    reason = f"HTTP {status} {why}".strip() + (f": {server}" if server else "")
                    if status in PER_PROMPT_STATUS:
                        kind = (
                            "context_length" if status == 413 or CONTEXT_LENGTH_RE.search(server) else f"http_{status}"
                        )
                        raise PromptRefused(kind, status, reason)
                    if status not in RETRY_STATUS and status < 500:
                        raise RequestFailure(reason, attempt, status, hint=HTTP_HINTS.get(status))
                    retry_after = retry_after_seconds(headers.get("Retry-After"))
            if attempt > self.max_retries:
                raise RequestFailure(reason, attempt, status, message)
            delay = self._delay(attempt, retry_after)
            logger.debug(
                "%s: %s; retry %d/%d in %.2f s", self.display_endpoint, reason, attempt, self.max_retries, delay
            )
            if stop.wait(delay):
                raise RunStopped()

    def _read(self, data: Any) -> Tuple[Optional[str], Optional[str], bool]:
        try:
            choice = data["choices"][0]
            content = (choice.get("message") or {}).get("content")
            if content is not None and not isinstance(content, str):
                raise TypeError(type(content).__name__)
            finish = choice.get("finish_reason")
        except (KeyError, IndexError, TypeError, AttributeError) as err:
            excerpt = self._redact(json.dumps(data, ensure_ascii=False)[:300])
            message = Errors.KF203.format(
                backend=BACKEND_NAME, endpoint=self.display_endpoint, status=200, excerpt=excerpt
            )
            raise RequestFailure(f"unreadable reply ({type(err).__name__})", 1, 200, message) from None
        return content, finish if isinstance(finish, str) else None, False

    def _check(
        self, content: Optional[str], finish: Optional[str], over: bool
    ) -> Tuple[str, Optional[str], Optional[str]]:
        """RETURNS: the text to keep, its issue and a note about it."""
        text = content or ""
        limit = self.max_reply_chars
        if over:
            return (
                text[:limit],
                "too_long",
                (f"reply body over {self._max_body} bytes; kept the first {len(text[:limit])} characters"),
            )
        if finish == "content_filter":
            return "", "content_filter", "finish_reason content_filter"
        if not text.strip():
            return "", "empty_reply", f"content {'null' if content is None else 'empty'}, finish_reason {finish}"
        if len(text) > limit:
            return text[:limit], "too_long", f"{len(text)} characters; kept the first {limit}"
        return text, None, None

    def _answer(self, prompt: str, pending: PendingPrompts, stop: threading.Event) -> Tuple[str, Any]:
        """Worker: ask for one prompt and cache the outcome at once."""
        try:
            content, finish, over = self._request(prompt, stop)
        except PromptRefused as refused:
            pending.answer(prompt, "", issue=refused.reason, message=refused.message)
            with self._count_lock:
                self._refused += 1
                trip = not self._answered and self._refused >= 3  # refused first 3, answered none
            if trip:
                stop.set()  # before this worker takes another prompt
            return "refused", (refused, trip)
        text, issue, note = self._check(content, finish, over)
        pending.answer(prompt, text, issue=issue, message=note)
        if not is_dropped(issue):
            with self._count_lock:
                self._answered = True
        return "ok", (finish == "length", issue)

    def _ask_all(self, pending: PendingPrompts) -> Tuple[Optional[RequestFailure], int]:
        """Send the prompts not in the cache. RETURNS: the first failure, replies cut at max_tokens."""
        work: "queue.SimpleQueue[str]" = queue.SimpleQueue()
        for prompt in pending.todo:
            work.put(prompt)
        results: "queue.SimpleQueue[Tuple[str, Any]]" = queue.SimpleQueue()
        stop = threading.Event()

        def worker() -> None:
            while not stop.is_set():
                try:
                    prompt = work.get_nowait()
                except queue.Empty:
                    return
                try:
                    results.put(self._answer(prompt, pending, stop))
                except RequestFailure as err:
                    stop.set()  # before anything else: no new request may start
                    results.put(("failed", err))
                except RunStopped:
                    results.put(("stopped", None))
                except Exception as err:  # a bug must not hang the run or show a traceback
                    stop.set()
                    results.put(
                        (
                            "failed",
                            RequestFailure(f"unexpected error ({type(err).__name__}: {self._redact(err)})", 1, None),
                        )
                    )

        threads = [
            threading.Thread(target=worker, name=f"knowfree-llm-{i}", daemon=True)
            for i in range(min(self.concurrency, len(pending.todo)))
        ]
        for thread in threads:
            thread.start()
        failure: Optional[RequestFailure] = None
        cut = 0

        def handle(kind: str, info: Any) -> None:
            nonlocal failure, cut
            if kind == "ok":
                self.calls.made += 1
                cut += int(info[0])
            elif kind == "refused":
                refused, trip = info
                if trip and failure is None:
                    failure = RequestFailure(
                        refused.message,
                        1,
                        refused.status,
                        Errors.KF212.format(
                            backend=BACKEND_NAME,
                            endpoint=self.display_endpoint,
                            count=self._refused,
                            reason=refused.reason,
                            message=refused.message,
                        ),
                    )
                    stop.set()
            elif kind == "failed":
                self.calls.failed += 1
                failure = failure or info
                stop.set()

        try:
            while True:
                try:
                    handle(*results.get(timeout=0.1))
                except queue.Empty:
                    if not any(t.is_alive() for t in threads) and results.empty():
                        break
        except KeyboardInterrupt:
            # No new requests; running ones get a few seconds to arrive (their
            # worker caches them), the rest are abandoned (daemon threads).
            stop.set()
            deadline = time.monotonic() + self.interrupt_grace
            for thread in threads:
                thread.join(max(0.0, deadline - time.monotonic()))
            while not results.empty():
                handle(*results.get_nowait())
            raise
        return failure, cut

    def _note_issues(self, pending: PendingPrompts) -> None:
        """Record the prompts without a clean reply (sent now or cached), per doc."""
        fresh: Counter = Counter()
        todo = set(pending.todo)
        for prompt, (issue, _) in pending.issues.items():
            if is_dropped(issue):
                self.calls.dropped += 1
                if prompt in todo:
                    fresh[issue] += 1
        for i, batch in enumerate(pending.batches):
            for prompt in dict.fromkeys(batch):
                if prompt in pending.issues:
                    issue, message = pending.issues[prompt]
                    self.dropped.append(
                        {"doc": self._docs_seen + i, "reason": issue, "message": message, "cached": prompt not in todo}
                    )
        self._docs_seen += len(pending.batches)
        if fresh:
            reasons = ", ".join(f"{reason}={count}" for reason, count in sorted(fresh.items()))
            warnings.warn(
                Warnings.KW204.format(backend=BACKEND_NAME, count=sum(fresh.values()), reasons=reasons), stacklevel=2
            )

    def __call__(self, prompts: Iterable[Iterable[str]]) -> Iterable[Iterable[str]]:
        """Reply to every prompt (cached replies are not asked again).

        prompts (Iterable[Iterable[str]]): prompts per doc (one per shard).
        RETURNS (Iterable[Iterable[str]]): replies per doc, in the same order.
        """
        pending = PendingPrompts(prompts, self.cache, self.backend_id, self.model, self.generation_params())
        self.calls.cached += len(pending.replies)
        if len(pending.replies) > len(pending.issues):  # the server answered these prompts before
            self._answered = True
        failure, cut = self._ask_all(pending) if pending.todo else (None, 0)
        self._note_issues(pending)
        total = len(pending.keys)
        done = len(pending.replies)
        if cut:
            warnings.warn(
                Warnings.KW201.format(
                    backend=BACKEND_NAME, count=cut, total=len(pending.todo), limit=self.max_tokens, arg="max_tokens"
                ),
                stacklevel=2,
            )
        if failure is not None:
            kept = (
                f"; their replies are kept in the response cache {self.cache.path}, so a rerun asks only for the rest"
                if self.cache is not None
                else "; configure a response cache (spacy-knowfree.ResponseCache.v1) to keep replies across runs"
            )
            message = Errors.KF202.format(
                backend=BACKEND_NAME,
                endpoint=self.display_endpoint,
                attempts=failure.attempts,
                reason=failure.reason,
                done=done,
                total=total,
                kept=kept,
            )
            if failure.message:
                message = failure.message + "\n" + message
            if failure.hint:
                message += f" Hint: {failure.hint}."
            raise BackendRequestError(
                self._redact(message), endpoint=self.display_endpoint, status=failure.status, done=done, total=total
            )
        return pending.in_order()


#: The class is the registered function: its ``__init__`` documents the settings.
make_openai_compatible_model = registry.llm_models("spacy-knowfree.OpenAICompatible.v1")(OpenAICompatibleModel)
