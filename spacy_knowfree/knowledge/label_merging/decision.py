"""The merge decision of eq. 6-8: pure functions of labels and vectors.

Each type ``T_k`` gets a centroid ``c_k`` (eq. 6) and a radius ``r_k``, the
mean distance of its ``p`` farthest vectors (eq. 7). In each proposed group
the reference type is the one with most vectors (ties: larger radius, then
first listed); a member ``T_j`` is merged into the standard label only if
``||c_j - c_max|| <= epsilon * r_max`` (eq. 8), otherwise it stays a
standard label of its own.
"""

from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ...errors import Errors
from .label_map import LabelMap, label_entry

DEFAULT_P = 5
DEFAULT_EPSILON = 1.5

#: ``{standard label: [member types]}`` as proposed by the LLM (eq. 3).
Groups = Mapping[str, Sequence[str]]


@dataclass
class TypeStats:
    """Vector statistics of one entity type (eq. 6-7)."""

    label: str
    size: int
    centroid: np.ndarray
    radius: float


def type_statistics(types: Sequence[str], vectors: np.ndarray, *, p: int = DEFAULT_P) -> Dict[str, TypeStats]:
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
) -> LabelMap:
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
        raise ValueError(Errors.KF260.format(arg="epsilon", value=epsilon, hint="epsilon must be a number >= 0."))
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
        entry = labels.setdefault(std, label_entry())
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
                rejected.append(
                    {
                        "type": m,
                        "group": std,
                        "distance": res["distance"],
                        "threshold": ev["threshold"],
                        "reason": f"also accepted by '{winner}', where it is relatively closer",
                    }
                )
            else:
                rejected.append(
                    {
                        "type": m,
                        "group": std,
                        "distance": res["distance"],
                        "threshold": ev["threshold"],
                        "reason": (
                            f"centroid distance {res['distance']:.4f} to reference "
                            f"'{ev['reference']}' > epsilon * r_max = {ev['threshold']:.4f}"
                        ),
                    }
                )
    mapped = {m["type"] for e in labels.values() for m in e["members"]}
    for item in rejected:
        t = item["type"]
        if t in mapped:
            continue
        mapped.add(t)
        entry = labels.setdefault(t, label_entry())
        entry["members"].append(_member(stats[t], 0.0, "independent"))
        if entry["reference"] is None:
            entry["reference"] = t
    for t, st in stats.items():
        if t in mapped:
            continue
        mapped.add(t)
        entry = labels.setdefault(t, label_entry())
        entry["members"].append(_member(st, 0.0, "ungrouped"))
        if entry["reference"] is None:
            entry["reference"] = t
    all_params = {"p": int(p), "epsilon": float(epsilon), "metric": "euclidean"}
    all_params.update(params or {})
    return LabelMap(labels=labels, rejected=rejected, absent=absent, params=all_params)


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
