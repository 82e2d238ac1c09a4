"""Lenient reading of JSON arrays and objects out of LLM replies.

Small and local models rarely return clean JSON. :func:`parse_json_items`
reads what a human would read as JSON and counts, by reason, what it had to
leave out; it never raises on any input. It copes with:

* prose around the data and Markdown code fences (```json ... ```);
* unquoted keys and values (``{entity: 北京, type: 地点}``);
* single quotes, typographic quotes (“ ” ‘ ’ 「 」) and full-width
  punctuation (，：［］｛｝) outside strings;
* trailing, leading and doubled commas, missing commas between items;
* Python literals (``True``/``None``) next to JSON ones;
* replies cut off mid-item (``max_tokens`` reached): the finished items are
  kept and the cut one is counted as ``truncated``;
* several JSON blocks in one reply (echoed format lines, repeated answers):
  the best block is chosen by a ranking function the caller passes in (for
  the tasks: how many items can be placed in the text) and the items of the
  other blocks are counted as ``other_block_items``.

:func:`parse_json_value` reads the same way but returns the best value
whole, for replies whose shape is the answer (P_merge's synonym groups).

Drop reasons reported here: ``no_json`` (the reply held nothing readable as
JSON; counts 1), ``truncated``, ``unreadable_item``, ``other_block_items``.
"""

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, TypeVar

#: Full-width or CJK punctuation read as its ASCII structural twin outside strings.
_STRUCTURAL = {
    "，": ",",
    "、": ",",
    "：": ":",
    "［": "[",
    "］": "]",
    "｛": "{",
    "｝": "}",
}
#: Opening quote -> the characters that may close it.
_QUOTES = {
    '"': '"',
    "'": "'",
    "“": "”“",
    "”": "”“",
    "‘": "’‘",
    "’": "’‘",
    "「": "」",
    "『": "』",
    "＂": '＂"',
}
_ESCAPES = {'"': '"', "'": "'", "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_LITERALS = {"true": True, "false": False, "null": None, "none": None}
_NUMBER_RE = re.compile(r"-?\d+(\.\d+)?([eE][-+]?\d+)?\Z")
_FENCE_RE = re.compile(r"```[^\n`]*\n(.*?)(?:```|\Z)", re.S)
_THINK_RE = re.compile(r"<think>.*?</think>", re.S)
_MAX_DEPTH = 64
#: An unquoted key: one short run without spaces, brackets or quotes.
_BARE_KEY_RE = re.compile(r"[^\s\[\]{}\"'“”‘’「」]{1,40}\Z")
#: Most top-level starts tried per reply (guards against bracket soup).
_MAX_STARTS = 256
#: What a block reader finds in a text (blocks or candidate item lists).
BlockT = TypeVar("BlockT")

Ranker = Callable[[List[Any]], float]


@dataclass
class ParsedReply:
    """What :func:`parse_json_items` read from one reply.

    items (List[Any]): the items of the chosen block (a top-level array's
        elements, or a run of top-level objects).
    dropped (Counter): number of items left out, by reason.
    found_json (bool): whether any JSON-like block was found.
    """

    items: List[Any] = field(default_factory=list)
    dropped: Counter = field(default_factory=Counter)
    found_json: bool = False


class _Truncated(Exception):
    """The text ended inside a value; ``partial`` holds what was complete."""

    def __init__(self, partial: Any, lost_item: bool):
        super().__init__()
        self.partial = partial
        self.lost_item = lost_item


class _Unreadable(Exception):
    """No value could be read at the current position."""


class _Reader:
    """Recursive-descent reader for sloppy JSON starting at ``pos``."""

    def __init__(self, text: str, pos: int):
        self.s = text
        self.i = pos
        self.n = len(text)
        self.unreadable = 0
        self.saw_quote = False

    def _peek(self) -> str:
        c = self.s[self.i]
        return _STRUCTURAL.get(c, c)

    def _skip_ws(self) -> None:
        while self.i < self.n and (self.s[self.i].isspace() or self.s[self.i] == "\ufeff"):
            self.i += 1

    def value(self, stops: str, depth: int = 0) -> Any:
        """Read one value; ``stops`` end an unquoted (bare) value."""
        if depth > _MAX_DEPTH:
            raise _Unreadable()
        self._skip_ws()
        if self.i >= self.n:
            raise _Truncated(None, lost_item=True)
        c = self._peek()
        if c == "[":
            return self.array(depth + 1)
        if c == "{":
            return self.obj(depth + 1)
        if self.s[self.i] in _QUOTES:
            return self.string()
        return self.bare(stops)

    def _next_member(self, closer: str, partial: Any) -> bool:
        """Skip white space and commas to the next member of an array or
        object: False (and past it) at its ``closer``; at the end of the text
        raise _Truncated with the ``partial`` container read so far."""
        while True:
            self._skip_ws()
            if self.i >= self.n:
                raise _Truncated(partial, lost_item=False)
            c = self._peek()
            if c == closer:
                self.i += 1
                return False
            if c != ",":
                return True
            self.i += 1

    def array(self, depth: int) -> List[Any]:
        self.i += 1
        items: List[Any] = []
        while self._next_member("]", items):
            start = self.i
            try:
                items.append(self.value(",]}\n", depth))
            except _Truncated as err:
                raise _Truncated(items, lost_item=True) from err
            except _Unreadable:
                self.unreadable += 1
                self.i = start
                self._skip_past_item("]")
        return items

    def obj(self, depth: int) -> Dict[str, Any]:
        """Read an object; a malformed pair makes the whole object unreadable."""
        self.i += 1
        result: Dict[str, Any] = {}
        while self._next_member("}", result):
            key: Optional[str] = None
            try:
                if self.s[self.i] in _QUOTES:
                    key = self.string()
                else:
                    key = str(self.bare(":,}\n="))
                    if not _BARE_KEY_RE.match(key):
                        raise _Unreadable()
                self._skip_ws()
                if self.i >= self.n:
                    raise _Truncated(result, lost_item=True)
                if self._peek() not in ":=":
                    raise _Unreadable()
                self.i += 1
                value = self.value(",}]\n", depth)
            except _Truncated as err:
                if key is not None and isinstance(err.partial, (list, dict)):
                    result[key] = err.partial
                raise _Truncated(result, lost_item=True) from err
            result[key] = value
        return result

    def string(self) -> str:
        opening = self.s[self.i]
        closers = _QUOTES[opening]
        self.saw_quote = True
        self.i += 1
        out: List[str] = []
        while self.i < self.n:
            c = self.s[self.i]
            if c in closers:
                self.i += 1
                return "".join(out)
            if c == "\\" and self.i + 1 < self.n:
                nxt = self.s[self.i + 1]
                if nxt == "u" and re.match(r"[0-9a-fA-F]{4}", self.s[self.i + 2 : self.i + 6]):
                    out.append(chr(int(self.s[self.i + 2 : self.i + 6], 16)))
                    self.i += 6
                    continue
                out.append(_ESCAPES.get(nxt, nxt))
                self.i += 2
                continue
            out.append(c)
            self.i += 1
        raise _Truncated("".join(out), lost_item=True)

    def bare(self, stops: str) -> Any:
        start = self.i
        while self.i < self.n and self._peek() not in stops and self.s[self.i] != "\n":
            self.i += 1
        raw = self.s[start : self.i].strip()
        if not raw or raw[0] in ":]}":
            raise _Unreadable()
        if self.i >= self.n:
            # A bare word running into the end of the text may be cut short.
            raise _Truncated(raw, lost_item=True)
        low = raw.lower()
        if low in _LITERALS:
            return _LITERALS[low]
        if _NUMBER_RE.match(raw):
            return float(raw) if any(ch in raw for ch in ".eE") else int(raw)
        return raw

    def _skip_past_item(self, closer: str) -> None:
        """Skip an unreadable item up to the next comma or ``closer`` at depth 0.

        Stops *before* a comma or ``closer`` (the caller's loop consumes it) and
        consumes a stray closing bracket of the other kind, so the caller
        always makes progress.
        """
        depth = 0
        while self.i < self.n:
            c = self._peek()
            if depth == 0:
                if c == "," or c == closer:
                    return
                if c in "]}":
                    self.i += 1
                    return
            if c in "[{":
                depth += 1
            elif c in "]}":
                depth -= 1
            self.i += 1


@dataclass
class _Block:
    """One top-level bracketed value found in a reply."""

    value: Any
    start: int
    end: int
    strong: bool
    lost_item: bool = False
    unreadable: int = 0


@dataclass
class _Candidate:
    """A candidate item list (one array, or a run of JSON-lines objects)."""

    items: List[Any]
    lost_item: bool = False
    unreadable: int = 0


def _is_strong(value: Any, saw_quote: bool) -> bool:
    """Whether a bracketed value looks like data rather than prose ("[1]")."""
    if isinstance(value, dict):
        return bool(value)
    if not value:
        return True
    return saw_quote or any(isinstance(v, (dict, list)) for v in value)


def _scan_blocks(text: str) -> List[_Block]:
    """All top-level bracketed values in ``text``, left to right.

    After a block that looks like data the scan resumes behind it; after one
    that looks like prose (``[1]``, ``{name}``) it resumes one character
    further, so a stray bracket cannot swallow the real answer.
    """
    blocks: List[_Block] = []
    i = 0
    n = len(text)
    starts = 0
    while i < n and starts < _MAX_STARTS:
        c = _STRUCTURAL.get(text[i], text[i])
        if c not in "[{":
            i += 1
            continue
        starts += 1
        reader = _Reader(text, i)
        try:
            value = reader.array(1) if c == "[" else reader.obj(1)
            lost, ended = False, False
        except _Truncated as err:
            value, lost, ended = err.partial, err.lost_item, True
        except _Unreadable:
            i += 1
            continue
        strong = _is_strong(value, reader.saw_quote) or lost
        blocks.append(_Block(value, i, reader.i, strong, lost, reader.unreadable))
        if strong and ended:
            break
        i = reader.i if strong else i + 1
    return blocks


def _is_wrapper(value: Dict[str, Any]) -> bool:
    """``{"entities": [...]}``: a one-key object around the item list."""
    return len(value) == 1 and isinstance(next(iter(value.values())), list)


def _data_blocks(text: str) -> List[_Block]:
    """The blocks of ``text`` that look like data (else the first block found)."""
    found = _scan_blocks(text)
    return [b for b in found if b.strong] or found[:1]


def _candidates(text: str) -> List[_Candidate]:
    """Group the blocks of ``text`` into candidate item lists."""
    blocks = _data_blocks(text)
    groups: List[_Candidate] = []
    run: Optional[_Candidate] = None
    run_end = -1
    for block in blocks:
        value = block.value
        if isinstance(value, dict) and not _is_wrapper(value):
            # JSON-lines style objects belong together when only commas or
            # whitespace separate them; a cut-off object is a lost item.
            joined = run is not None and text[run_end : block.start].strip(" \t\r\n,，") == ""
            if run is None or not joined:
                run = _Candidate([])
                groups.append(run)
            if block.lost_item:
                run.lost_item = True
            else:
                run.items.append(value)
            run.unreadable += block.unreadable
            run_end = block.end
            continue
        run = None
        items = next(iter(value.values())) if isinstance(value, dict) else value
        groups.append(_Candidate(list(items), block.lost_item, block.unreadable))
    return groups


def _fenced_first(text: str, read: Callable[[str], List[BlockT]]) -> List[BlockT]:
    """What ``read`` finds in the fenced blocks of ``text``: fenced blocks win,
    the whole text is read when fences hold nothing."""
    found = [block for match in _FENCE_RE.finditer(text) for block in read(match.group(1))]
    return found or read(text)


def _best(candidates: List[Any], rank: Callable[[Any], float]) -> int:
    """Index of the highest-ranked candidate (the first one on ties); a
    ranking function that raises scores 0, it must never break parsing."""
    scores = []
    for cand in candidates:
        try:
            scores.append(float(rank(cand)))
        except Exception:
            scores.append(0.0)
    return max(range(len(candidates)), key=lambda k: (scores[k], -k))


def parse_json_value(reply: Any, rank: Optional[Callable[[Any], float]] = None) -> Optional[Any]:
    """Read the best JSON-like value of an LLM reply as it is (not unwrapped).

    Where :func:`parse_json_items` wants a list of items, this returns the
    whole top-level object or array, for replies whose shape is the answer
    (``{"人名": ["人物"]}``). It reads what :func:`parse_json_items` reads,
    and leaves out ``<think>...</think>`` reasoning blocks.

    reply (Any): the raw reply; anything that is not a string reads as nothing.
    rank (Optional[Callable[[Any], float]]): scores a candidate value; the
        highest-scoring one wins, the first one on ties (default: the first).
    RETURNS (Optional[Any]): the value (a dict or a list), or None when the
        reply holds nothing readable as JSON.
    """
    if not isinstance(reply, str) or not reply.strip():
        return None
    blocks = _fenced_first(_THINK_RE.sub("", reply), _data_blocks)
    if not blocks:
        return None
    values = [b.value for b in blocks]
    return values[_best(values, rank) if rank else 0]


def parse_json_items(reply: Any, rank: Optional[Ranker] = None) -> ParsedReply:
    """Read the item list of the best JSON-like block in an LLM reply.

    reply (Any): the raw reply; anything that is not a string reads as empty.
    rank (Optional[Callable[[List[Any]], float]]): scores a candidate item list;
        the highest-scoring block wins, the first one on ties. Defaults to the
        number of items.
    RETURNS (ParsedReply): the items, the drop counts and whether JSON was found.
    """
    result = ParsedReply()
    if not isinstance(reply, str) or not reply.strip():
        result.dropped["no_json"] += 1
        return result
    candidates = _fenced_first(reply, _candidates)
    if not candidates:
        result.dropped["no_json"] += 1
        return result
    result.found_json = True
    best = _best([c.items for c in candidates], rank or len)
    chosen = candidates[best]
    result.items = list(chosen.items)
    if chosen.lost_item:
        result.dropped["truncated"] += 1
    if chosen.unreadable:
        result.dropped["unreadable_item"] += chosen.unreadable
    others = sum(len(c.items) for k, c in enumerate(candidates) if k != best)
    if others:
        result.dropped["other_block_items"] += others
    return result
