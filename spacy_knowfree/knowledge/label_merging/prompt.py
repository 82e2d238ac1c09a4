"""P_merge (KnowFREE eq. 2-3): the synonym-group prompt and its reply.

:func:`build_merge_prompt` renders the built-in ``merge.v1.<lang>.jinja``
template over the type inventory; :func:`parse_merge_response` reads the
reply with the package's one lenient JSON reader
(:func:`spacy_knowfree.llm.parsing.parse_json_value`) and accepts the shapes
models give synonym groups in. Both need the ``llm`` extra, like every LLM
prompt: they import the prompt and parsing code of
:mod:`spacy_knowfree.llm` when called, so importing this module does not.
"""

from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from ...errors import Errors

#: The name and version of the P_merge template (``templates/merge.v1.<lang>.jinja``).
MERGE_TEMPLATE = "merge"
MERGE_TEMPLATE_VERSION = "v1"
_SEPARATORS = {"zh": "、", "en": ", "}


def build_merge_prompt(
    types: Union[Iterable[str], Mapping[str, int]],
    *,
    examples: Optional[Mapping[str, Sequence[str]]] = None,
    language: str = "zh",
    max_examples: int = 3,
) -> str:
    """Build the synonymous-label merge prompt ``P_merge`` (eq. 2).

    types: The type inventory ``T``; a mapping ``{type: count}`` adds counts
        and orders types by frequency.
    examples (Optional[Mapping[str, Sequence[str]]]): Entity texts per type,
        shown (up to ``max_examples``) to disambiguate labels.
    language (str): ``"zh"`` (the paper's language) or ``"en"``.
    max_examples (int): Most entity texts shown per type.
    RETURNS (str): The prompt text.
    """
    from ...llm.tasks.prompts import PromptRenderer, read_template

    if language not in _SEPARATORS:
        raise ValueError(Errors.KF260.format(arg="language", value=language, hint="Use 'zh' or 'en'."))
    if isinstance(types, Mapping):
        items = sorted(types.items(), key=lambda kv: (-kv[1], str(kv[0])))
        names = [str(t) for t, _ in items]
        counts = {str(t): c for t, c in items}
    else:
        names = list(dict.fromkeys(str(t) for t in types))
        counts = {}
    if not names:
        raise ValueError(Errors.KF269)
    rows = [
        {
            "name": t,
            "count": counts.get(t),
            "examples": list(dict.fromkeys((examples or {}).get(t, [])))[:max_examples],
        }
        for t in names
    ]
    renderer = PromptRenderer(read_template(MERGE_TEMPLATE, language, MERGE_TEMPLATE_VERSION))
    return renderer(types=rows)


_STD_KEYS = ("standard", "standard_label", "standard label", "canonical", "label", "name", "标准标签", "标准", "标签")
_MEMBER_KEYS = (
    "members",
    "synonyms",
    "synonym_labels",
    "labels",
    "aliases",
    "group",
    "同义标签",
    "同义词",
    "成员",
    "原始标签",
)
_WRAPPER_KEYS = ("groups", "result", "results", "merge", "merged", "mapping", "output", "分组", "结果", "合并结果")


def parse_merge_response(text: str, *, known_types: Optional[Iterable[str]] = None) -> Dict[str, List[str]]:
    """Parse an LLM's reply to ``P_merge`` leniently into synonym groups.

    Accepts whatever :func:`~spacy_knowfree.llm.parsing.parse_json_value`
    reads (code fences, ``<think>`` blocks, text around the JSON, single
    quotes, Chinese quotes and punctuation, trailing commas, unquoted keys);
    shapes ``{std: [members]}``, ``{std: "member"}``, ``{"groups": ...}`` and
    ``[{"standard": ..., "members": [...]}]`` / ``[[std, [members]]]``.

    text (str): The reply.
    known_types (Optional[Iterable[str]]): When given, members not in it
        (invented by the model) are dropped.
    RETURNS (Dict[str, List[str]]): ``{standard label: [members]}``.
    """
    from ...llm.parsing import parse_json_value

    obj = text if isinstance(text, (dict, list)) else parse_json_value(text, rank=_count_groups)
    if obj is None:
        raise ValueError(Errors.KF270.format(snippet=_snippet(text)))
    groups = _groups_from_obj(obj)
    if groups is None:
        raise ValueError(Errors.KF270.format(snippet=_snippet(text)))
    known = None if known_types is None else set(known_types)
    out: Dict[str, List[str]] = {}
    claimed = set()
    for std, members in groups:
        std = str(std).strip()
        if not std:
            continue
        ms = []
        for m in members:
            m = str(m).strip()
            if not m or m in claimed or (known is not None and m not in known):
                continue
            claimed.add(m)
            ms.append(m)
        if std in out:
            out[std].extend(m for m in ms if m not in out[std])
        else:
            out[std] = ms
    return out


def _snippet(text: Any) -> str:
    s = str(text)
    return s[:200] + ("..." if len(s) > 200 else "")


def _count_groups(value: Any) -> float:
    """Rank a JSON block by the synonym groups it holds (echoed format lines hold fewer)."""
    return float(len(_groups_from_obj(value) or []))


def _groups_from_obj(obj: Any) -> Optional[List[Tuple[str, List[str]]]]:
    if isinstance(obj, Mapping):
        if len(obj) == 1:
            ((k, v),) = obj.items()
            if str(k).strip().lower() in _WRAPPER_KEYS and isinstance(v, (Mapping, list)):
                return _groups_from_obj(v)
        if any(k in obj for k in _STD_KEYS) and any(k in obj for k in _MEMBER_KEYS):
            return _groups_from_obj([obj])
        out = []
        for std, v in obj.items():
            if isinstance(v, str):
                out.append((std, [v]))
            elif isinstance(v, list):
                out.append((std, [str(m) for m in v if isinstance(m, (str, int, float))]))
            elif isinstance(v, Mapping):
                mk = next((k for k in _MEMBER_KEYS if isinstance(v.get(k), list)), None)
                if mk is not None:
                    out.append((std, list(v[mk])))
        return out
    if isinstance(obj, list):
        out = []
        for item in obj:
            if isinstance(item, Mapping):
                sk = next((k for k in _STD_KEYS if isinstance(item.get(k), str)), None)
                mk = next((k for k in _MEMBER_KEYS if isinstance(item.get(k), (list, str))), None)
                if sk is None and mk is None:
                    continue
                members = item[mk] if mk is not None else []
                members = [members] if isinstance(members, str) else list(members)
                std = item[sk] if sk is not None else (members[0] if members else None)
                if std is not None:
                    out.append((std, members))
            elif isinstance(item, list) and item:
                if len(item) == 2 and isinstance(item[0], str) and isinstance(item[1], list):
                    out.append((item[0], list(item[1])))
                elif all(isinstance(m, str) for m in item):
                    out.append((item[0], list(item)))
        return out
    return None
