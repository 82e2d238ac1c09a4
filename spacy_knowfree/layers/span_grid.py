"""Thinc layer running the span-grid encoder and output layer in row groups.

The token vectors of a batch are concatenated; every token starts one band
row (the spans starting there). Every row depends only on the W tokens it
spans, so rows are scored in consecutive groups of at most ``batch_rows``
rows, each with the ``batch_rows + W - 1`` tokens it needs. Nothing is
padded, and the result is exactly the same as scoring all rows at once, while
memory is bounded by the group size whatever the document length.

With a token-evidence layer (``token_evidence = true`` in
``spacy-knowfree.KnowFREE.v1``), every token also gets three scores per label
from its vector: begin, inside and end; with ``ngram_evidence = true`` the
same three scores also come from the token's hashed character n-grams
(``ngram_evidence.py``), and the head's input is (vectors, scores). The logit of span ``s..e`` is then
``W_O(grid) + begin[s] + sum(inside[s..e]) + end[e]``: a long span collects
evidence from every token it covers, as a BIOES tagger does, instead of
depending on its two ends alone. The sum is taken with prefix sums, so the
cost is linear in the number of tokens.
"""
from typing import Callable, List, Optional, Tuple, cast

import numpy
from thinc.api import ArgsKwargs, Model, PyTorchWrapper_v2, torch2xp, xp2torch
from thinc.shims import PyTorchShim
from thinc.types import Floats2d, Floats3d, Ints1d

from .torch_grid import KnowFREEGridEncoder
from .torch_state import StateDictShim

InT = List[Floats2d]
OutT = List[Floats3d]


def build_grid_encoder(encoder: KnowFREEGridEncoder) -> Model:
    """Wrap the torch encoder; its input is ``(tokens, lengths, n_rows)``.
    Its weights are saved as a state dict of tensors and loaded with
    ``torch.load(..., weights_only=True)``: loading never unpickles code."""
    wrapper = PyTorchWrapper_v2(encoder, convert_inputs=_convert_inputs, convert_outputs=_convert_outputs)
    wrapper.shims[0] = StateDictShim(encoder)
    return wrapper


def _convert_inputs(
    model: Model, X: Tuple[Floats2d, Ints1d, Ints1d], is_train: bool
) -> Tuple[ArgsKwargs, Callable[[ArgsKwargs], Floats2d]]:
    shim = cast(PyTorchShim, model.shims[0])
    tokens, row_start, n_valid = X
    args = ArgsKwargs(
        args=(
            xp2torch(tokens, requires_grad=is_train, device=shim.device),
            xp2torch(row_start, device=shim.device).long(),
            xp2torch(n_valid, device=shim.device).long(),
        ),
        kwargs={},
    )

    def backprop(d_args: ArgsKwargs) -> Floats2d:
        return cast(Floats2d, torch2xp(d_args.args[0]))

    return args, backprop


def _convert_outputs(model: Model, X_Ytorch, is_train: bool):
    shim = cast(PyTorchShim, model.shims[0])
    _, Ytorch = X_Ytorch
    Y = cast(Floats3d, torch2xp(Ytorch))

    def backprop(dY: Floats3d) -> ArgsKwargs:
        dYtorch = xp2torch(dY, device=shim.device)
        return ArgsKwargs(args=((Ytorch,),), kwargs={"grad_tensors": (dYtorch,)})

    return Y, backprop


def span_grid_head(encoder: Model, output_layer: Model, *, batch_rows: int,
                   evidence_layer: Optional[Model] = None) -> Model[InT, OutT]:
    """Create the head: token vectors per doc -> logits (L, W, nO) per doc.

    evidence_layer (Optional[Model]): a layer from token vectors to 3 * nO
        scores (begin, inside, end per label) added to the span logits, or None.

    Attributes set by the component before ``initialize``:
    ``max_span_width`` (W) and, for prediction only, ``n_predict_columns`` (the
    output columns to compute: the target labels come first, so extension
    columns are never computed at inference).
    """
    layers = [encoder, output_layer]
    refs = {"encoder": encoder, "output_layer": output_layer}
    if evidence_layer is not None:
        layers.append(evidence_layer)
        refs["evidence_layer"] = evidence_layer
    return Model(
        "knowfree_span_grid",
        _forward,
        init=_init,
        layers=layers,
        refs=refs,
        dims={"nO": None},
        attrs={
            "batch_rows": batch_rows,
            "max_span_width": 0,
            "n_predict_columns": None,
        },
    )


def torch_encoder(model: Model) -> KnowFREEGridEncoder:
    """The torch module inside the head's encoder layer."""
    return cast(KnowFREEGridEncoder, model.get_ref("encoder").shims[0]._model)


def configure_encoder(model: Model) -> None:
    """Build the W-dependent parts of the torch encoder (before use or loading)."""
    width = int(model.attrs["max_span_width"])
    encoder = torch_encoder(model)
    if encoder.max_span_width != width:
        encoder.configure(width)
        shim = cast(PyTorchShim, model.get_ref("encoder").shims[0])
        encoder.to(shim.device)


def _init(model: Model, X: Optional[InT] = None, Y=None) -> Model:
    if isinstance(X, tuple):  # (token vectors, n-gram evidence)
        X = X[0]
    configure_encoder(model)
    output_layer = model.get_ref("output_layer")
    evidence = model.get_ref("evidence_layer") if model.has_ref("evidence_layer") else None
    if model.has_dim("nO"):
        output_layer.set_dim("nO", model.get_dim("nO"))
        if evidence is not None:
            evidence.set_dim("nO", 3 * model.get_dim("nO"))
    if X is not None and any(len(x) for x in X):
        # One forward pass materialises the lazily sized input projections
        # and tells the output layer its input width.
        sample = [x for x in X if len(x)][:8]
        tokens, row_start, n_valid = _rows(model, sample)
        features, _ = model.get_ref("encoder")((tokens, row_start, n_valid), False)
        output_layer.initialize(X=features.reshape((-1, features.shape[-1])))
        if evidence is not None:
            evidence.initialize(X=tokens)
    else:
        output_layer.set_dim("nI", torch_encoder(model).grid_width)
        output_layer.initialize()
        if evidence is not None:
            evidence.initialize()
    return model


def _rows(model: Model, X: InT) -> Tuple[Floats2d, Ints1d, Ints1d]:
    """Concatenated tokens, and per row (= token) its index and valid cells."""
    ops = model.ops
    width = int(model.attrs["max_span_width"])
    lengths = numpy.asarray([x.shape[0] for x in X], dtype="int32")
    doc_ends = numpy.repeat(numpy.cumsum(lengths), lengths)
    row_start = numpy.arange(int(lengths.sum()), dtype="int32")
    n_valid = numpy.minimum(doc_ends - row_start, width).astype("int32")
    tokens = ops.flatten(X) if len(X) else ops.alloc2f(0, 0)
    return tokens, ops.asarray1i(row_start), ops.asarray1i(n_valid)


def _forward(model: Model[InT, OutT], X: InT, is_train: bool) -> Tuple[OutT, Callable]:
    """X: token vectors per doc, or (token vectors, n-gram evidence) per doc
    (``ngram_evidence = true``: 3 × nO scores per token, see ngram_evidence.py)."""
    ops = model.ops
    wide = None
    if isinstance(X, tuple):
        X, wide = X
    width = int(model.attrs["max_span_width"])
    batch_rows = int(model.attrs["batch_rows"])
    encoder = model.get_ref("encoder")
    output_layer = model.get_ref("output_layer")
    n_out = output_layer.get_dim("nO")
    n_columns = n_out if is_train else (model.attrs["n_predict_columns"] or n_out)
    lengths = [x.shape[0] for x in X]
    tokens, row_start, n_valid = _rows(model, X)
    n_rows = tokens.shape[0]
    Y_flat = ops.alloc3f(n_rows, width, n_columns)
    backprops = []
    for first in range(0, n_rows, batch_rows):
        last = min(first + batch_rows, n_rows)
        token_end = min(last + width - 1, n_rows)
        group_in = (tokens[first:token_end], row_start[first:last] - first, n_valid[first:last])
        features, bp_encoder = encoder(group_in, is_train)
        flat = features.reshape((-1, features.shape[-1]))
        if is_train:
            logits, bp_output = output_layer(flat, is_train)
        else:
            W = output_layer.get_param("W")[:n_columns]
            b = output_layer.get_param("b")[:n_columns]
            logits, bp_output = ops.gemm(flat, W, trans2=True) + b, None
        Y_flat[first:last] = logits.reshape((last - first, width, n_columns))
        if is_train:  # at inference nothing of a group outlives it
            backprops.append((first, last, token_end, features.shape, bp_encoder, bp_output))
        del features, flat, logits, bp_encoder, bp_output
    bp_evidence = bp_dense = None
    evidence = []  # begin/inside/end scores per token: from the vectors, from n-grams
    if n_rows and model.has_ref("evidence_layer"):
        dense, bp_dense = model.get_ref("evidence_layer")(tokens, is_train)
        evidence.append(dense)
    if n_rows and wide is not None:
        evidence.append(ops.flatten(wide))
    if evidence:
        bp_evidence = _add_token_evidence(model, sum(evidence[1:], evidence[0]), Y_flat, n_out,
                                          n_columns, is_train)
    Y = ops.unflatten(Y_flat, ops.asarray1i(lengths)) if X else []

    def backprop(dY: OutT):
        dY_flat = ops.flatten(dY) if len(dY) else ops.alloc3f(0, width, n_out)
        d_tokens = ops.alloc2f(*tokens.shape)
        for first, last, token_end, shape, bp_encoder, bp_output in backprops:
            d_features = bp_output(dY_flat[first:last].reshape((-1, n_out)))
            d_tokens[first:token_end] += bp_encoder(d_features.reshape(shape))
        d_evidence = bp_evidence(dY_flat) if bp_evidence is not None else None
        if bp_dense is not None:
            d_tokens += bp_dense(d_evidence)
        d_X = ops.unflatten(d_tokens, ops.asarray1i(lengths))
        if wide is None:
            return d_X
        if d_evidence is None:
            d_evidence = ops.alloc2f(n_rows, 3 * n_out)
        return d_X, ops.unflatten(d_evidence, ops.asarray1i(lengths))

    return Y, backprop


def _add_token_evidence(model: Model, evidence: Floats2d, Y_flat: Floats3d, n_out: int,
                        n_columns: int, is_train: bool) -> Optional[Callable]:
    """Add ``begin[s] + sum(inside[s..e]) + end[e]`` to every cell of
    ``Y_flat`` (R, W, n_columns), in place, from ``evidence`` (R, 3 * n_out):
    begin, inside and end scores of every label. Cells past a document's end
    get some value too; they are masked in the loss and at decoding.
    RETURNS the backprop callback to d_evidence (training) or None."""
    xp = model.ops.xp
    n_rows, width, _ = Y_flat.shape
    begin = evidence[:, :n_columns]
    inside = evidence[:, n_out:n_out + n_columns]
    end = evidence[:, 2 * n_out:2 * n_out + n_columns]
    # prefix sums in float64: a batch has ~10^5 tokens, and a difference of two
    # large float32 sums would lose the small ones
    prefix = xp.concatenate([xp.zeros((1, n_columns), dtype="float64"),
                             xp.cumsum(inside, axis=0, dtype="float64")])
    last = xp.minimum(xp.arange(n_rows)[:, None] + xp.arange(width)[None, :], n_rows - 1)
    Y_flat += ((begin - prefix[:-1])[:, None, :] + (end + prefix[1:])[last]).astype("float32")
    if not is_train:
        return None

    def backprop(dY: Floats3d) -> Floats2d:
        d_begin = dY.sum(axis=1)
        # d_at_end[e]: the gradient of every cell whose last token is e
        d_at_end = xp.zeros((n_rows, n_out), dtype=dY.dtype)
        for k in range(width):
            if k < n_rows:
                d_at_end[k:] += dY[:n_rows - k, k]
            if k:  # cells past the last token were clipped to it in the forward pass
                d_at_end[n_rows - 1] += dY[max(n_rows - k, 0):, k].sum(axis=0)
        # inside[t] enters every cell with s <= t <= e: (cells ending at >= t)
        # minus (cells starting after t)
        ends_from = xp.cumsum(d_at_end[::-1], axis=0)[::-1]
        starts_after = xp.concatenate([xp.cumsum(d_begin[::-1], axis=0)[::-1][1:],
                                       xp.zeros((1, n_out), dtype=dY.dtype)])
        d_evidence = xp.concatenate([d_begin, ends_from - starts_after, d_at_end], axis=1)
        return xp.ascontiguousarray(d_evidence, dtype="float32")

    return backprop
