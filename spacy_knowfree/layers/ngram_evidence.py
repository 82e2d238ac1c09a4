"""Sparse character n-gram evidence: the "wide" part of a wide-and-deep span model.

A linear-chain CRF on character n-grams learns one weight per (feature, tag):
with a few hundred sentences that direct route beats a CNN over embeddings
(benchmarks/results/accuracy.md, ``crf`` rows). This layer gives the span
model the same route: each token's CRF features (the unigrams in a ±2
window, the bigrams in a ±2 window and the centred trigram, as in
benchmarks/crf.py) are hashed into one table of ``n_buckets`` rows, and the
rows of a token are summed into ``3 * n_labels`` scores: begin, inside and
end per label. The span grid head adds them to the span logits as
``begin[s] + sum(inside[s..e]) + end[e]`` (see ``span_grid``), so a span's
score has a linear term in the sparse features of every character it covers.
The table starts at zero (training starts from the plain model) and is
regularised by the optimizer's L2 like every weight.
"""

from typing import Callable, List, Tuple

import numpy
from spacy.attrs import ORTH
from spacy.tokens import Doc
from thinc.api import Model
from thinc.types import Floats2d

from .char_ngram_embed import _mix, neighbour_keys

# one salt per feature template, so "U-1=北" and "U+1=北" are different keys
_TEMPLATES = ("U-2", "U-1", "U+0", "U+1", "U+2", "B-2", "B-1", "B+0", "B+1", "T")
_SALTS = numpy.asarray([0x51ED270B27A1C3F5 + 0x1000193 * i for i in range(len(_TEMPLATES))], dtype="uint64")
N_HASHES = 2  # rows summed per feature, against collisions


def ngram_feature_keys(orth: numpy.ndarray) -> numpy.ndarray:
    """(n_tokens, 10) uint64 keys of each token's CRF features (``_TEMPLATES``)."""
    at = {offset: neighbour_keys(orth, offset) for offset in range(-2, 3)}
    columns = [at[offset] for offset in range(-2, 3)]
    columns += [_mix(at[offset], at[offset + 1]) for offset in range(-2, 2)]
    columns.append(_mix(_mix(at[-1], at[0]), at[1]))
    keys = numpy.stack(columns, axis=1) if len(orth) else numpy.zeros((0, len(_TEMPLATES)), "uint64")
    return _mix(keys, numpy.broadcast_to(_SALTS, keys.shape))


def ngram_evidence(n_buckets: int = 262144, seed: int = 31) -> Model[List[Doc], List[Floats2d]]:
    """Docs -> per doc, (n_tokens, nO) sums of hashed n-gram weights.

    n_buckets (int): rows of the weight table (hashed features share rows).
    nO is set by the span head before ``initialize``: 3 × the number of labels.
    """
    return Model(
        "ngram_evidence",
        _forward,
        init=_init,
        dims={"nO": None},
        params={"E": None},
        attrs={"n_buckets": n_buckets, "seed": seed},
    )


def resize_ngram_evidence(model: Model, n_out: int) -> Model:
    """Set the layer's output width to ``n_out`` (3 × labels); a table of
    another width is dropped, and ``initialize`` makes a new one at zero.
    RETURNS (Model): the layer."""
    if model.maybe_get_dim("nO") != n_out:
        model.set_param("E", None)
        model.set_dim("nO", n_out, force=True)
    return model


def _init(model: Model, X=None, Y=None) -> Model:
    shape = (int(model.attrs["n_buckets"]), model.get_dim("nO"))
    if not model.has_param("E") or model.get_param("E").shape != shape:
        model.set_param("E", model.ops.alloc2f(*shape))  # zero: starts as the plain model
    return model


def _rows(model: Model, docs: List[Doc]) -> List[numpy.ndarray]:
    """Per doc, (n_tokens, 10 * N_HASHES) row indices of its features."""
    n_buckets = numpy.uint64(model.attrs["n_buckets"])
    rows = []
    for doc in docs:
        keys = ngram_feature_keys(doc.to_array(ORTH).astype("uint64").reshape(-1))
        hashed = model.ops.to_numpy(model.ops.hash(model.ops.asarray(keys.reshape(-1)), model.attrs["seed"]))  # type: ignore[arg-type]
        picked = hashed[:, :N_HASHES].astype("uint64") % n_buckets
        rows.append(picked.reshape(len(doc), -1).astype("int64"))
    return rows


def _forward(model: Model, docs: List[Doc], is_train: bool) -> Tuple[List[Floats2d], Callable]:
    ops = model.ops
    E = model.get_param("E")
    rows = [ops.xp.asarray(r) for r in _rows(model, docs)]
    outputs = [E[r].sum(axis=1) if len(r) else ops.alloc2f(0, E.shape[1]) for r in rows]  # type: ignore[misc]

    def backprop(d_outputs: List[Floats2d]) -> List[Doc]:
        dE = ops.alloc2f(*E.shape)
        for r, d in zip(rows, d_outputs):
            if len(r):  # every feature row of a token gets the token's gradient
                ops.scatter_add(dE, r.reshape(-1), ops.xp.repeat(d, r.shape[1], axis=0))
        model.inc_grad("E", dE)
        return []

    return outputs, backprop
