"""Endpoint URLs and credentials of the HTTP backend: validation, the
credential-free form used in cache keys, and redaction of messages.

Credentials can reach a URL as userinfo (``http://user:pass@host/...``) or
in the query string (``...?key=...``). Neither may be written to the response
cache or printed: cache keys use :func:`public_endpoint`, and every message
goes through :func:`redact`.
"""

import json
import re
from typing import Any, Iterable, Optional
from urllib.parse import urlsplit, urlunsplit

from ...errors import Errors

_URL = re.compile(r"(?i)\b(https?://)([^\s/?#@]*@)?([^\s?#]*)(\?[^\s#]*)?")
_KEYLIKE = re.compile(r"\b(sk|pk|rk)-[A-Za-z0-9_\-]{8,}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def _redact_url(match: "re.Match[str]") -> str:
    scheme, userinfo, rest, query = match.groups()
    return scheme + ("***@" if userinfo else "") + rest + ("?***" if query else "")


def redact(text: Any, secrets: Iterable[Optional[str]] = ()) -> str:
    """``text`` with URL userinfo and query strings, key-like tokens and the
    given ``secrets`` replaced by ``***``.

    text (Any): a message (converted with ``str``).
    secrets (Iterable[Optional[str]]): exact values to hide (e.g. the API key).
    RETURNS (str): the redacted text.
    """
    out = str(text)
    for secret in secrets:
        if secret and len(secret) >= 4:
            out = out.replace(secret, "***")
    out = _URL.sub(_redact_url, out)
    return _KEYLIKE.sub(lambda m: m.group(1) + "-***", out)


def check_endpoint(endpoint: Any, backend: str) -> str:
    """Validate an endpoint URL; RETURNS (str) it with a lowercase scheme.

    Raises ``ValueError`` (KF204, URL redacted) for anything requests could
    not call: no http(s) scheme, no host, a port outside 1-65535, spaces.
    """
    hint = "Give the full URL of the chat completions route, e.g. http://127.0.0.1:8000/v1/chat/completions."
    problem = None
    parts = None
    if not isinstance(endpoint, str) or not endpoint.strip():
        problem = "no URL"
    elif any(ch.isspace() for ch in endpoint.strip()):
        problem = "the URL contains whitespace"
    else:
        try:
            parts = urlsplit(endpoint.strip())
            port = parts.port
        except ValueError:
            problem = "the port is not a number between 1 and 65535"
        else:
            if parts.scheme.lower() not in ("http", "https"):
                problem = "the scheme must be http:// or https://"
            elif not parts.hostname:
                problem = "the URL has no host"
            elif port is not None and not 1 <= port <= 65535:
                problem = "the port is not a number between 1 and 65535"
    if problem is not None or parts is None:
        problem = problem or "the URL could not be read"
        raise ValueError(
            Errors.KF204.format(
                arg="endpoint",
                backend=backend,
                value=redact(endpoint),
                hint=f"{problem[0].upper()}{problem[1:]}. {hint}",
            )
        )
    return urlunsplit((parts.scheme.lower(),) + tuple(parts[1:]))


def public_endpoint(endpoint: str) -> str:
    """The endpoint without userinfo, query string and fragment (for cache keys)."""
    parts = urlsplit(endpoint)
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port is not None else "")
    return urlunsplit((parts.scheme.lower(), netloc, parts.path, "", ""))


def check_api_key_env(value: Any, backend: str) -> Optional[str]:
    """Validate ``api_key_env``: the NAME of an environment variable, never a key.

    RETURNS (Optional[str]): the name, or None for no key. Raises
    ``ValueError`` (KF209) without echoing a value that looks like a key.
    """
    if value is None or value == "":
        return None
    name = str(value)
    looks_like_key = (
        not _ENV_NAME.match(name)  # keys hold '-', '.', '/' ...; variable names do not
        or (len(name) >= 20 and any(c.islower() for c in name) and any(c.isdigit() for c in name))
        or (len(name) >= 32 and "_" not in name)
    )
    if looks_like_key:
        raise ValueError(Errors.KF209.format(backend=backend, length=len(name)))
    return name


def server_message(raw: bytes, limit: int = 300) -> str:
    """The error message in a server reply: ``error.message``, ``error``,
    ``message`` or ``detail`` of a JSON body, else the start of the text."""
    text = raw.decode("utf8", "replace")
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    found: Any = None
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict):
            found = error.get("message") or error.get("msg")
        elif isinstance(error, str):
            found = error
        found = found or data.get("message") or data.get("detail")
        if isinstance(found, (list, dict)):
            found = json.dumps(found, ensure_ascii=False)
    message = " ".join(str(found if found else text).split())
    return message[:limit] + ("..." if len(message) > limit else "")
