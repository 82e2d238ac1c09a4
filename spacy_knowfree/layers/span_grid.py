"""Thinc layer running the span-grid encoder and output layer in row groups.

The token vectors of a batch are concatenated; every token starts one band
row (the spans starting there). Every row depends only on the W tokens it
spans, so rows are scored in consecutive groups of at most ``batch_rows``
rows, each with the ``batch_rows + W - 1`` tokens it needs. Nothing is
padded, and the result is exactly the same as scoring all rows at once, while
memory is bounded by the group size whatever the document length.
"""
from typing import Callable, List, Optional, Tuple, cast

import numpy
from thinc.api import ArgsKwargs, Model, PyTorchWrapper_v2, torch2xp, xp2torch
from thinc.shims import PyTorchShim
from thinc.types import Floats2d, Floats3d, Ints1d

from .torch_grid import KnowFREEGridEncoder

InT = List[Floats2d]
OutT = List[Floats3d]


def build_grid_encoder(encoder: KnowFREEGridEncoder) -> Model:
    """Wrap the torch encoder; its input is ``(tokens, lengths, n_rows)``."""
    return PyTorchWrapper_v2(
        encoder, convert_inputs=_convert_inputs, convert_outputs=_convert_outputs
    )


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


def span_grid_head(encoder: Model, output_layer: Model, *, batch_rows: int) -> Model[InT, OutT]:
    """Create the head: token vectors per doc -> logits (L, W, nO) per doc.

    Attributes set by the component before ``initialize``:
    ``max_span_width`` (W) and, for prediction only, ``n_predict_columns`` (the
    output columns to compute: the target labels come first, so extension
    columns are never computed at inference).
    """
    return Model(
        "knowfree_span_grid",
        _forward,
        init=_init,
        layers=[encoder, output_layer],
        refs={"encoder": encoder, "output_layer": output_layer},
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
    configure_encoder(model)
    output_layer = model.get_ref("output_layer")
    if model.has_dim("nO"):
        output_layer.set_dim("nO", model.get_dim("nO"))
    if X is not None and any(len(x) for x in X):
        # One forward pass materialises the lazily sized input projections
        # and tells the output layer its input width.
        sample = [x for x in X if len(x)][:8]
        tokens, row_start, n_valid = _rows(model, sample)
        features, _ = model.get_ref("encoder")((tokens, row_start, n_valid), False)
        output_layer.initialize(X=features.reshape((-1, features.shape[-1])))
    else:
        output_layer.set_dim("nI", torch_encoder(model).grid_width)
        output_layer.initialize()
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
    ops = model.ops
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
    Y = ops.unflatten(Y_flat, ops.asarray1i(lengths)) if X else []

    def backprop(dY: OutT) -> InT:
        dY_flat = ops.flatten(dY) if len(dY) else ops.alloc3f(0, width, n_out)
        d_tokens = ops.alloc2f(*tokens.shape)
        for first, last, token_end, shape, bp_encoder, bp_output in backprops:
            d_features = bp_output(dY_flat[first:last].reshape((-1, n_out)))
            d_tokens[first:token_end] += bp_encoder(d_features.reshape(shape))
        return ops.unflatten(d_tokens, ops.asarray1i(lengths))

    return Y, backprop
