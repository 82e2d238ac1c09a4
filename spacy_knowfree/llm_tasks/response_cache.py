"""A disk cache of LLM replies, so an interrupted run resumes where it stopped.

Replies are keyed by ``(backend id, model, prompt, generation parameters)``
and appended, one JSON line each, to a JSONL file the moment they arrive (the
line is written with a single ``write`` and flushed). A run killed at any
point therefore keeps every reply it had received; at worst the last line is
torn, and it is skipped with a warning when the file is read again.

Why replies and not docs: spacy-llm's ``spacy.BatchCache.v1`` stores finished
*docs*, keyed only by the sum of their token hashes, and writes them only
every ``batch_size`` docs, so a killed run loses the unwritten batch; it also
ignores the annotations a prompt depends on (the ``SEG:`` words given to the
POS task), and a cached doc replaces the incoming one, dropping spans that
earlier components wrote in this run. Caching replies avoids all of that: a
changed prompt is a new key, and parsing re-runs on cached replies (cheap), so
parser fixes apply to old runs without asking the LLM again. Both backends
use this cache; leave ``BatchCache`` at its default ``path = null``.

JSONL rather than sqlite: appends are atomic enough for one writer per file,
a torn tail is trivially detected, and the file can be read, grepped and
merged by hand.

Both backends also count, in :class:`LLMCallCounts` (attribute ``calls``),
how many prompts they sent to the LLM and how many the cache answered, so
``knowfree extend`` can say what a run cost and show that a rerun is cheap.
"""
import hashlib
import json
import os
import threading
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Union

from spacy_llm.registry import registry

from ..errors import Errors, Warnings


def cache_key(backend: str, model: str, prompt: str, params: Mapping[str, Any]) -> str:
    """Stable key (hex sha256) of one request."""
    payload = json.dumps([backend, model, prompt, dict(params)], ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(payload.encode("utf8")).hexdigest()


@dataclass
class LLMCallCounts:
    """What a backend did with the (distinct) prompts it was given.

    made: prompts sent to the LLM that came back with a reply;
    cached: prompts answered from the response cache (nothing sent);
    failed: prompts that failed for good (after retries).
    Identical prompts within one call count once.
    """

    made: int = 0
    cached: int = 0
    failed: int = 0

    def as_dict(self) -> Dict[str, int]:
        return asdict(self)

    def add(self, other: "LLMCallCounts") -> None:
        self.made += other.made
        self.cached += other.cached
        self.failed += other.failed


class PendingPrompts:
    """The distinct prompts of one backend call, split into cached and to-do.

    Both backends answer ``prompts`` (per doc, per shard) the same way: look
    every distinct prompt up in the cache, ask the LLM for the rest, store
    each reply the moment it arrives, and return the replies in input order.
    """

    def __init__(self, prompts: Iterable[Iterable[str]], cache: Optional["ResponseCache"],
                 backend: str, model: str, params: Mapping[str, Any]) -> None:
        self.batches: List[List[str]] = [list(p) for p in prompts]
        self.cache = cache
        self.meta = {"backend": backend, "model": model}
        self.replies: Dict[str, str] = {}
        self.keys: Dict[str, str] = {}
        self.todo: List[str] = []
        for prompt in dict.fromkeys(p for batch in self.batches for p in batch):
            key = self.keys[prompt] = cache_key(backend, model, prompt, params)
            cached = cache.get(key) if cache is not None else None
            if cached is None:
                self.todo.append(prompt)
            else:
                self.replies[prompt] = cached

    def answer(self, prompt: str, reply: str) -> None:
        """Record (and cache at once) the reply to one prompt."""
        self.replies[prompt] = reply
        if self.cache is not None:
            self.cache.put(self.keys[prompt], reply, self.meta)

    def in_order(self) -> List[List[str]]:
        """The replies per doc, in the order of the prompts."""
        return [[self.replies[p] for p in batch] for batch in self.batches]


class ResponseCache:
    """Append-only JSONL store of replies; thread-safe within one process."""

    def __init__(self, path: Union[str, Path]):
        """Open (and read) the cache file at ``path``; it is created on first write.

        path (Union[str, Path]): the JSONL file.
        """
        self.path = Path(path)
        if self.path.is_dir():
            raise ValueError(Errors.KF207.format(path=self.path))
        self._lock = threading.Lock()
        self._data: Dict[str, str] = {}
        self.hits = 0
        self.misses = 0
        self.added = 0
        self._needs_newline = False
        self._load()

    def _load(self) -> None:
        if not self.path.exists():
            return
        raw = self.path.read_bytes()
        bad = 0
        for line in raw.split(b"\n"):
            if not line.strip():
                continue
            try:
                record = json.loads(line.decode("utf8"))
                self._data[str(record["key"])] = str(record["response"])
            except (ValueError, KeyError, TypeError):
                bad += 1
        self._needs_newline = bool(raw) and not raw.endswith(b"\n")
        if bad:
            warnings.warn(Warnings.KW202.format(path=self.path, count=bad))

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: str) -> bool:
        return key in self._data

    def get(self, key: str) -> Optional[str]:
        """The cached reply for ``key``, or None (counted as hit or miss)."""
        with self._lock:
            value = self._data.get(key)
            if value is None:
                self.misses += 1
            else:
                self.hits += 1
            return value

    def put(self, key: str, response: str, meta: Optional[Mapping[str, Any]] = None) -> None:
        """Store a reply and append it to the file right away.

        key (str): from :func:`cache_key`.
        response (str): the reply text.
        meta (Optional[Mapping[str, Any]]): small extra fields saved with it
            (backend, model), for people reading the file.
        """
        record = {"key": key, "response": response, "time": round(time.time(), 3)}
        record.update(meta or {})
        line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf8")
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self._needs_newline:  # do not glue onto a torn last line
                line = b"\n" + line
                self._needs_newline = False
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                view = memoryview(line)
                while view:
                    view = view[os.write(fd, view):]
            finally:
                os.close(fd)
            self._data[key] = response
            self.added += 1


@registry.llm_misc("spacy-knowfree.ResponseCache.v1")
def make_response_cache(path: str) -> ResponseCache:
    """Registered factory: a reply cache in the JSONL file ``path``.

    path (str): cache file, e.g. ``cache/llm_responses.jsonl``.
    RETURNS (ResponseCache): the cache.
    """
    return ResponseCache(path)
