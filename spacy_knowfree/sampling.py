"""Low-resource training subsets, drawn reproducibly from a pool of Docs.

* :func:`sample_kshot`: K-sentence subsets from one seeded permutation; each
  subset is a prefix of it, so a larger K contains every smaller K
  (250 ⊂ 500 ⊂ 1000).
* :func:`sample_nway_kshot`: the greedy n-way k-shot sampler of Yang &
  Katiyar (2020, "Simple and Effective Few-Shot Named Entity Recognition with
  Structured Nearest Neighbor Learning", Algorithm 1): labels are visited from
  the rarest to the most frequent; for each label still below ``k`` instances,
  sentences that contain it are added in seeded order until it reaches ``k``.
  Every label then has at least ``k`` instances (all of its instances when the
  pool has fewer), and every added sentence helped a label still below ``k``.
"""

import random
from collections import Counter
from typing import Dict, Iterable, List, Optional, Sequence

from spacy.tokens import Doc
from wasabi import msg

from .errors import Errors, Warnings


def label_counts(docs: Iterable[Doc], spans_key: str = "sc") -> Counter:
    """Number of spans per label in ``doc.spans[spans_key]`` over ``docs``."""
    counts: Counter = Counter()
    for doc in docs:
        if spans_key in doc.spans:
            counts.update(span.label_ for span in doc.spans[spans_key])
    return counts


def kshot_indices(n: int, ks: Iterable[int], seed: int = 0) -> Dict[int, List[int]]:
    """Indices of nested K-sized subsets of ``range(n)``.

    n (int): pool size. ks (Iterable[int]): the subset sizes. seed (int): seed
        of the one permutation all subsets are prefixes of.
    RETURNS (Dict[int, List[int]]): K -> the first K indices of the permutation.
    """
    ks = sorted(set(ks))
    if not ks or any(not isinstance(k, int) or isinstance(k, bool) or k <= 0 for k in ks):
        raise ValueError(Errors.KF119.format(ks=ks))
    if ks[-1] > n:
        raise ValueError(Errors.KF118.format(k=ks[-1], n=n))
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return {k: order[:k] for k in ks}


def sample_kshot(docs: Sequence[Doc], ks: Iterable[int], seed: int = 0) -> Dict[int, List[Doc]]:
    """Nested K-sentence subsets of ``docs`` (see :func:`kshot_indices`).
    RETURNS (Dict[int, List[Doc]]): K -> the Docs, in sampled order."""
    return {k: [docs[i] for i in idx] for k, idx in kshot_indices(len(docs), ks, seed).items()}


def nway_kshot_indices(
    docs: Sequence[Doc],
    k: int,
    *,
    spans_key: str = "sc",
    labels: Optional[Iterable[str]] = None,
    seed: int = 0,
    warn: bool = True,
) -> List[int]:
    """Indices of a greedy n-way k-shot sample (Yang & Katiyar 2020).

    docs (Sequence[Doc]): the pool.
    k (int): minimum number of instances (spans) per label.
    spans_key (str): key of ``doc.spans`` holding the labelled spans.
    labels (Optional[Iterable[str]]): the n labels to cover; default every
        label in the pool. Spans of other labels do not count.
    seed (int): seed of the order in which sentences are considered.
    warn (bool): print a wasabi warning for labels with fewer than ``k``
        instances in the pool (all their sentences are then taken).
    RETURNS (List[int]): indices into ``docs``, in the order they were added.
    """
    if not isinstance(k, int) or isinstance(k, bool) or k <= 0:
        raise ValueError(Errors.KF119.format(ks=[k]))
    per_doc = [label_counts([doc], spans_key) for doc in docs]
    pool: Counter = Counter()
    for counts in per_doc:
        pool.update(counts)
    wanted = set(labels) if labels is not None else set(pool)
    per_doc = [Counter({lab: c for lab, c in counts.items() if lab in wanted}) for counts in per_doc]
    order = list(range(len(docs)))
    random.Random(seed).shuffle(order)
    chosen: List[int] = []
    taken = set()
    have: Counter = Counter()
    for label in sorted(wanted, key=lambda lab: (pool[lab], lab)):
        for i in order:
            if have[label] >= k:
                break
            if i not in taken and per_doc[i][label]:
                taken.add(i)
                chosen.append(i)
                have.update(per_doc[i])
    short = {label: pool[label] for label in sorted(wanted) if pool[label] < k}
    if short and warn:
        msg.warn(Warnings.KW103.format(k=k, counts=short))
    return chosen


def sample_nway_kshot(
    docs: Sequence[Doc],
    k: int,
    *,
    spans_key: str = "sc",
    labels: Optional[Iterable[str]] = None,
    seed: int = 0,
    warn: bool = True,
) -> List[Doc]:
    """Greedy n-way k-shot sample of ``docs`` (see :func:`nway_kshot_indices`).
    RETURNS (List[Doc]): the sampled Docs, in the order they were added."""
    idx = nway_kshot_indices(docs, k, spans_key=spans_key, labels=labels, seed=seed, warn=warn)
    return [docs[i] for i in idx]
