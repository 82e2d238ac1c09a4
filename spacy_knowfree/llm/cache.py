"""A disk cache of LLM replies, so an interrupted run resumes where it stopped.

Replies are keyed by ``(backend id, model, prompt, generation parameters)``
and appended, one JSON line each, to a JSONL file the moment they arrive (the
line is written with a single ``write`` by the thread that received the
reply). A run killed at any point therefore keeps every reply it had
received; at worst the last line is torn, and it is skipped with a warning
when the file is read again. Lines are written with ``ensure_ascii``, so any
string a server sends (lone surrogates included) is stored and read back.

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

Safety and bounds:

* only the index (key -> file offset) is kept in memory; reply bodies are
  read from the file on demand, so memory is flat in the number of replies;
* one process at a time: ``<cache>.lock`` is locked (``flock``) while a cache
  object is open; a second process gets KF210. Within one process all
  objects on a file share the lock, and the registered factory
  (``spacy-knowfree.ResponseCache.v1``) returns one shared object per file;
* a file with any line that is not a cache record (training data, a
  ``.spacy`` DocBin) is refused (KF208) before anything is sent or written;
* a reply recorded with an ``issue`` (dropped by the server, or cut at the
  reply length limit) is answered from the cache like any other, unless
  ``retry_failed`` is set, which asks for it again.

Both backends also count, in :class:`LLMCallCounts` (attribute ``calls``),
how many prompts they sent to the LLM and how many the cache answered, so
``knowfree extend`` can say what a run cost and show that a rerun is cheap.
"""

import hashlib
import json
import os
import re
import threading
import time
import warnings
import weakref
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple, Union

from spacy_llm.registry import registry

from ..errors import Errors, Warnings

try:  # POSIX; elsewhere two processes on one cache are not detected
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

#: Set to 1 to ask again for prompts recorded with an issue (any command).
RETRY_FAILED_ENV = "KNOWFREE_RETRY_FAILED"
#: Every record line starts like this (``key`` is written first).
_RECORD_PREFIX = b'{"key": "'
_SURROGATE = re.compile("[\ud800-\udfff]")


def cache_key(backend: str, model: str, prompt: str, params: Mapping[str, Any]) -> str:
    """Stable key (hex sha256) of one request."""
    payload = json.dumps([backend, model, prompt, dict(params)], ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(payload.encode("utf8", "surrogatepass")).hexdigest()


def retry_failed_from_env() -> bool:
    """Whether ``KNOWFREE_RETRY_FAILED`` asks to retry prompts recorded with an issue."""
    return os.environ.get(RETRY_FAILED_ENV, "").strip().lower() not in ("", "0", "false", "no")


def clean_text(text: str) -> str:
    """``text`` with lone surrogates replaced by U+FFFD (they cannot be encoded
    as UTF-8, so spaCy could not save labels or text holding them)."""
    return _SURROGATE.sub("\ufffd", text)


@dataclass
class LLMCallCounts:
    """What a backend did with the (distinct) prompts it was given.

    made: prompts sent to the LLM that came back with a reply;
    cached: prompts answered from the response cache (nothing sent);
    failed: prompts that failed for good (after retries);
    dropped: prompts recorded without a usable reply (filtered, empty or
    refused by the server), sent now or answered from the cache.
    Identical prompts within one call count once.
    """

    made: int = 0
    cached: int = 0
    failed: int = 0
    dropped: int = 0

    def as_dict(self) -> Dict[str, int]:
        return asdict(self)

    def add(self, other: "LLMCallCounts") -> None:
        self.made += other.made
        self.cached += other.cached
        self.failed += other.failed
        self.dropped += other.dropped


@dataclass
class CachedReply:
    """One cache record: the reply text and, when it was not a clean reply,
    the ``issue`` (e.g. ``content_filter``, ``http_400``, ``too_long``) and
    the server's ``message``."""

    text: str
    issue: Optional[str] = None
    message: Optional[str] = None


class PendingPrompts:
    """The distinct prompts of one backend call, split into cached and to-do.

    Both backends answer ``prompts`` (per doc, per shard) the same way: look
    every distinct prompt up in the cache, ask the LLM for the rest, store
    each reply the moment it arrives, and return the replies in input order.
    ``answer`` may be called from worker threads.
    """

    def __init__(
        self,
        prompts: Iterable[Iterable[str]],
        cache: Optional["ResponseCache"],
        backend: str,
        model: str,
        params: Mapping[str, Any],
    ) -> None:
        self.batches: List[List[str]] = [list(p) for p in prompts]
        self.cache = cache
        self.meta = {"backend": backend, "model": model}
        self.replies: Dict[str, str] = {}
        self.issues: Dict[str, Tuple[str, Optional[str]]] = {}
        self.keys: Dict[str, str] = {}
        self.todo: List[str] = []
        for prompt in dict.fromkeys(p for batch in self.batches for p in batch):
            key = self.keys[prompt] = cache_key(backend, model, prompt, params)
            cached = cache.lookup(key) if cache is not None else None
            if cached is None:
                self.todo.append(prompt)
            else:
                self.replies[prompt] = cached.text
                if cached.issue:
                    self.issues[prompt] = (cached.issue, cached.message)

    def answer(self, prompt: str, reply: str, *, issue: Optional[str] = None, message: Optional[str] = None) -> None:
        """Cache (first, so nothing can lose it) and record the reply to one prompt."""
        if self.cache is not None:
            self.cache.put(self.keys[prompt], reply, self.meta, issue=issue, message=message)
        self.replies[prompt] = reply
        if issue:
            self.issues[prompt] = (issue, message)

    def in_order(self) -> List[List[str]]:
        """The replies per doc, in the order of the prompts."""
        return [[clean_text(self.replies[p]) for p in batch] for batch in self.batches]


# ----------------------------------------------------------------------------- process lock
class _FileLock:
    """The ``flock`` on ``<cache>.lock``, held once per process and file."""

    def __init__(self, resolved: str, fd: Optional[int]):
        self.resolved = resolved
        self.fd = fd
        self.refs = 0
        #: serializes appends of every cache object on this file in this process
        self.write_lock = threading.Lock()


_LOCKS: Dict[str, _FileLock] = {}
_LOCKS_GUARD = threading.Lock()


def lock_path(path: Path) -> Path:
    """The lock file of the cache ``path``: ``<path>.lock`` next to it."""
    return path.with_name(path.name + ".lock")


def _flock(path: Path) -> Optional[int]:
    if fcntl is None:
        return None
    lock = lock_path(path)
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            pid = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
        finally:
            os.close(fd)
        raise ValueError(Errors.KF210.format(path=path, pid=pid, lock=lock)) from None
    except OSError:  # no flock on this file system: go on without the check
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode("ascii"))
    return fd


def _acquire(path: Path) -> _FileLock:
    resolved = str(path.resolve())
    with _LOCKS_GUARD:
        lock = _LOCKS.get(resolved)
        if lock is None:
            lock = _LOCKS[resolved] = _FileLock(resolved, _flock(path))
        lock.refs += 1
        return lock


def _release(lock: _FileLock) -> None:
    with _LOCKS_GUARD:
        lock.refs -= 1
        if lock.refs > 0:
            return
        _LOCKS.pop(lock.resolved, None)
        if lock.fd is not None:
            os.close(lock.fd)  # releases the flock
            lock.fd = None


# ----------------------------------------------------------------------------- the cache
class ResponseCache:
    """Append-only JSONL store of replies; thread-safe, one process per file."""

    def __init__(self, path: Union[str, Path]):
        """Index the cache file at ``path`` (created on first write) and lock it.

        path (Union[str, Path]): the JSONL file. Raises ``ValueError``: KF207
            for a directory, KF208 for a file that is not a cache, KF210 when
            another process has it open.
        """
        self.path = Path(path)
        if self.path.is_dir():
            raise ValueError(Errors.KF207.format(path=self.path))
        self._index: Dict[str, Tuple[int, int]] = {}
        self._issues: Dict[str, str] = {}
        self._end = 0
        self._needs_newline = False
        self.hits = 0
        self.misses = 0
        self.added = 0
        #: answer records with an issue as misses, so their prompts are asked again
        self.retry_failed = retry_failed_from_env()
        torn = self._scan(0, strict=True)
        if torn:
            warnings.warn(Warnings.KW202.format(path=self.path, count=torn), stacklevel=2)
        self._shared = _acquire(self.path)
        self._lock = self._shared.write_lock
        self._finalizer = weakref.finalize(self, _release, self._shared)

    def _scan(self, start: int, strict: bool) -> int:
        """Index the records from byte ``start`` on. RETURNS (int): torn lines skipped."""
        if not self.path.exists():
            return 0
        if strict:
            with self.path.open("rb") as handle:
                head = handle.read(4096).lstrip()
            if head and not head.startswith(b"{"):  # a DocBin, text, CSV ...: refuse without reading it all
                raise ValueError(Errors.KF208.format(path=self.path, problem="it does not hold JSON lines"))
        torn = 0
        pos = start
        last = b"\n"
        with self.path.open("rb") as handle:
            handle.seek(start)
            for number, line in enumerate(handle, 1):
                offset, pos = pos, pos + len(line)
                last = line[-1:]
                body = line.strip()
                if not body:
                    continue
                record: Any = None
                try:
                    record = json.loads(body)
                except ValueError:
                    pass
                if (
                    isinstance(record, dict)
                    and isinstance(record.get("key"), str)
                    and isinstance(record.get("response"), str)
                ):
                    self._index[record["key"]] = (offset, len(line))
                    if record.get("issue"):
                        self._issues[record["key"]] = str(record["issue"])
                    else:
                        self._issues.pop(record["key"], None)
                elif record is None and (body.startswith(_RECORD_PREFIX) or _RECORD_PREFIX.startswith(body)):
                    torn += 1  # a record cut off by a killed run
                elif strict:
                    what = "a cache record" if record is not None else "JSON"
                    raise ValueError(Errors.KF208.format(path=self.path, problem=f"line {number} is not {what}"))
        self._end = pos
        self._needs_newline = last != b"\n"
        return torn

    def refresh(self) -> None:
        """Index records appended to the file since it was read (by another
        cache object of this process)."""
        with self._lock:
            self._scan(self._end, strict=False)

    def close(self) -> None:
        """Release the lock file (also done when the object is garbage collected)."""
        self._finalizer()

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, key: str) -> bool:
        return key in self._index

    def _read(self, where: Tuple[int, int]) -> Optional[Dict[str, Any]]:
        offset, length = where
        try:
            with self.path.open("rb") as handle:
                handle.seek(offset)
                record = json.loads(handle.read(length))
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) else None

    def lookup(self, key: str) -> Optional[CachedReply]:
        """The cached record for ``key``, or None (counted as hit or miss).

        Records with an issue count as misses while ``retry_failed`` is set.
        """
        with self._lock:
            where = self._index.get(key)
            if where is not None and self.retry_failed and key in self._issues:
                where = None
        record = self._read(where) if where is not None else None
        if record is None or record.get("key") != key:
            self.misses += 1
            return None
        self.hits += 1
        issue = record.get("issue")
        message = record.get("message")
        return CachedReply(
            str(record.get("response", "")), str(issue) if issue else None, str(message) if message else None
        )

    def get(self, key: str) -> Optional[str]:
        """The cached reply text for ``key``, or None (counted as hit or miss)."""
        found = self.lookup(key)
        return None if found is None else found.text

    def issues(self) -> Dict[str, str]:
        """Key -> issue of the records that were not clean replies."""
        with self._lock:
            return dict(self._issues)

    def put(
        self,
        key: str,
        response: str,
        meta: Optional[Mapping[str, Any]] = None,
        *,
        issue: Optional[str] = None,
        message: Optional[str] = None,
    ) -> None:
        """Store a reply and append it to the file right away.

        key (str): from :func:`cache_key`.
        response (str): the reply text (any string; stored ASCII-escaped).
        meta (Optional[Mapping[str, Any]]): small extra fields saved with it
            (backend, model), for people reading the file.
        issue (Optional[str]): why the reply is not a clean one (``too_long``,
            ``content_filter``, ``http_400`` ...).
        message (Optional[str]): the server's message about it.
        """
        record: Dict[str, Any] = {"key": key, "response": str(response), "time": round(time.time(), 3)}
        record.update({k: v for k, v in (meta or {}).items() if k not in ("key", "response", "issue")})
        if issue:
            record["issue"] = issue
            if message:
                record["message"] = message
        line = (json.dumps(record, ensure_ascii=True) + "\n").encode("ascii")
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self._needs_newline:  # do not glue onto a torn last line
                line = b"\n" + line
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                offset = os.fstat(fd).st_size
                view = memoryview(line)
                while view:
                    view = view[os.write(fd, view) :]
            finally:
                os.close(fd)
            self._needs_newline = False
            if line.startswith(b"\n"):
                offset, line = offset + 1, line[1:]
            self._index[key] = (offset, len(line))
            if issue:
                self._issues[key] = issue
            else:
                self._issues.pop(key, None)
            self.added += 1


_SHARED: "weakref.WeakValueDictionary[str, ResponseCache]" = weakref.WeakValueDictionary()
_SHARED_GUARD = threading.Lock()


def shared_response_cache(path: Union[str, Path]) -> ResponseCache:
    """The one cache object of this process for the file ``path`` (keyed by
    resolved path), so every LLM component of a pipeline shares its index."""
    resolved = str(Path(path).resolve())
    with _SHARED_GUARD:
        cache = _SHARED.get(resolved)
        if cache is None:
            cache = _SHARED[resolved] = ResponseCache(path)
        else:
            cache.refresh()
        return cache


@registry.llm_misc("spacy-knowfree.ResponseCache.v1")
def make_response_cache(path: str) -> ResponseCache:
    """Registered factory: the reply cache in the JSONL file ``path``, shared
    by every component that names the same file.

    path (str): cache file, e.g. ``cache/llm_responses.jsonl``.
    RETURNS (ResponseCache): the cache.
    """
    return shared_response_cache(path)
