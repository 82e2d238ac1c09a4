"""The reviewable JSON label map: standard label -> merged member types.

:class:`LabelMap` is what the merge decision produces and what
``knowfree merge-labels --apply-only`` reads back after review; this module
holds its JSON reading and writing and nothing else.
"""

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Union

import numpy as np

from ...errors import Errors

LABEL_MAP_VERSION = 1


def label_entry() -> Dict[str, Any]:
    """An empty ``labels`` entry: the evidence fields and no members yet."""
    return {
        "reference": None,
        "threshold": None,
        "epsilon": None,
        "reference_size": None,
        "reference_radius": None,
        "members": [],
    }


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
        return _round_floats(
            {
                "version": LABEL_MAP_VERSION,
                "kind": "spacy-knowfree.label_map",
                "params": self.params,
                "labels": self.labels,
                "rejected": self.rejected,
                "absent": self.absent,
            }
        )

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
            e = label_entry()
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
        _ = out.mapping  # validate: each type under one label only
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


def as_mapping(label_map: Union[LabelMap, Mapping[str, Any], str, Path]) -> Dict[str, str]:
    """``{type: standard}`` from a :class:`LabelMap`, its JSON path, its dict,
    or a plain ``{type: standard}`` dict."""
    if isinstance(label_map, LabelMap):
        return label_map.mapping
    if isinstance(label_map, (str, Path)):
        return LabelMap.from_json(label_map).mapping
    if isinstance(label_map, Mapping):
        if "labels" in label_map and isinstance(label_map["labels"], Mapping):
            return LabelMap.from_dict(label_map).mapping
        return {str(k): str(v) for k, v in label_map.items()}
    raise ValueError(Errors.KF264.format(problem=f"cannot use a {type(label_map).__name__} as a label map"))


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
