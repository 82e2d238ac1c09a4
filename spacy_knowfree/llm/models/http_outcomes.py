"""How the OpenAI-compatible client reads HTTP outcomes: which statuses are
retried or refuse one prompt, the hints shown for dropped replies and failed
requests, ``Retry-After``, a bounded read of an over-long reply, and the
failure types the client raises internally and to its caller."""

import email.utils
import json
import re
import time
from typing import Optional

import requests

BACKEND_NAME = "OpenAICompatible"
RETRY_STATUS = frozenset({408, 429})
#: a refusal of this one prompt: recorded as dropped, the run goes on
PER_PROMPT_STATUS = frozenset({400, 413, 422})
NOT_RETRIED = (
    requests.exceptions.InvalidURL,
    requests.exceptions.MissingSchema,
    requests.exceptions.InvalidSchema,
    requests.exceptions.InvalidHeader,
    requests.exceptions.InvalidJSONError,
    requests.exceptions.URLRequired,
)
CONTEXT_LENGTH_RE = re.compile(
    r"(?i)context[ _-]?(length|window)|maximum context|max_model_len|too many tokens|prompt is too long"
)
CONTENT_RE = re.compile(rb'"content"\s*:\s*"')
#: what each reason of a dropped or cut reply means, and what to do about it
DROP_HINTS = {
    "context_length": "the prompt plus max_tokens is longer than the served model accepts, so asking "
    "again fails the same way: lower --vars.context_length (long docs are then sharded "
    "into smaller prompts) or --vars.max_tokens, then rerun with --retry-failed",
    "content_filter": "the server's content filter withheld the reply",
    "empty_reply": "the server sent no text",
    "too_long": "the reply was longer than max_reply_chars and was cut there",
}
HTTP_HINTS = {
    401: "check the API key in the environment variable named by api_key_env",
    403: "check the API key in the environment variable named by api_key_env",
    404: "check the endpoint URL and the model name",
}


def is_dropped(issue: Optional[str]) -> bool:
    """Whether a recorded issue means the reply was dropped (not merely cut)."""
    return bool(issue) and issue != "too_long"


class BackendRequestError(ConnectionError):
    """A prompt failed for good; ``done`` of ``total`` prompts had replies."""

    def __init__(self, message: str, *, endpoint: str, status: Optional[int], done: int, total: int):
        super().__init__(message)
        self.endpoint = endpoint
        self.status = status
        self.done = done
        self.total = total


class RequestFailure(Exception):
    """Internal: one prompt failed (after retries, or at once for most 4xx)."""

    def __init__(
        self,
        reason: str,
        attempts: int,
        status: Optional[int],
        message: Optional[str] = None,
        hint: Optional[str] = None,
    ):
        super().__init__(reason)
        self.reason = reason
        self.attempts = attempts
        self.status = status
        self.message = message
        self.hint = hint


class PromptRefused(Exception):
    """Internal: the server refused this one prompt (recorded as dropped)."""

    def __init__(self, reason: str, status: int, message: str):
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.message = message


class RunStopped(Exception):
    """Internal: the run stopped (failure elsewhere, or Ctrl-C) before this prompt finished."""


def retry_after_seconds(value: Optional[str]) -> Optional[float]:
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


def content_prefix(raw: bytes, limit: int) -> str:
    """The start of ``choices[0].message.content`` in a body too long to parse whole."""
    match = CONTENT_RE.search(raw)
    if match is None:
        return ""
    rest = raw[match.end() : match.end() + 8 * limit].decode("utf8", "ignore")
    for cut in range(7):  # drop a half escape sequence at the end
        try:
            text, _ = json.decoder.scanstring(rest[: len(rest) - cut] + '"', 0, False)  # type: ignore[attr-defined]
        except ValueError:
            continue
        return text[:limit]
    return ""
