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

import math
from functools import partial
from typing import Callable, List, Optional, Sequence, Tuple, cast

import numpy
import torch
from thinc.api import ArgsKwargs, Linear, Model, PyTorchWrapper_v2, resizable, torch2xp, xp2torch
from thinc.layers.resizable import resize_model
from thinc.shims import PyTorchShim
from thinc.types import Floats2d, Floats3d, Ints1d
from torch.nn import functional as F

from ..errors import Errors
from .int8 import int8_copy
from .torch_grid import KnowFREEGridEncoder
from .torch_state import StateDictShim

InT = List[Floats2d]
OutT = List[Floats3d]
# max_span_width = "auto" (the knowfree component): the longest target span of
# the training data plus a margin of a quarter of it (at least
# AUTO_WIDTH_MIN_MARGIN tokens), rounded up to a multiple of AUTO_WIDTH_STEP,
# and at most AUTO_WIDTH_CAP.
AUTO_WIDTH_MIN_MARGIN = 2
AUTO_WIDTH_STEP = 4
AUTO_WIDTH_CAP = 32


def build_grid_encoder(encoder: KnowFREEGridEncoder) -> Model:
    """Wrap the torch encoder: ``(tokens, n_valid)`` -> ``(features, cells)``.
    Its weights are saved as a state dict of tensors and loaded with
    ``torch.load(..., weights_only=True)``: loading never unpickles code."""
    wrapper = PyTorchWrapper_v2(encoder, convert_inputs=_convert_inputs, convert_outputs=_convert_outputs)
    wrapper.shims[0] = StateDictShim(encoder)
    return wrapper


def _convert_inputs(
    model: Model, X: Tuple[Floats2d, Ints1d], is_train: bool
) -> Tuple[ArgsKwargs, Callable[[ArgsKwargs], Floats2d]]:
    shim = cast(PyTorchShim, model.shims[0])
    tokens, n_valid = X
    args = ArgsKwargs(
        args=(
            xp2torch(tokens, requires_grad=is_train, device=shim.device),
            xp2torch(n_valid, device=shim.device).long(),
        ),
        kwargs={},
    )

    def backprop(d_args: ArgsKwargs) -> Floats2d:
        return cast(Floats2d, torch2xp(d_args.args[0]))

    return args, backprop


def _convert_outputs(model: Model, X_Ytorch, is_train: bool):
    shim = cast(PyTorchShim, model.shims[0])
    _, (features, cells) = X_Ytorch
    Y = (cast(Floats2d, torch2xp(features)), cast(Ints1d, torch2xp(cells)))

    def backprop(dY: Floats2d) -> ArgsKwargs:
        dYtorch = xp2torch(dY, device=shim.device)
        return ArgsKwargs(args=((features,),), kwargs={"grad_tensors": (dYtorch,)})

    return Y, backprop


def span_grid_head(
    encoder: Model,
    output_layer: Model,
    *,
    max_span_width: Optional[int],
    batch_rows: int,
    evidence_layer: Optional[Model] = None,
) -> Model[InT, OutT]:
    """Create the head: token vectors per doc -> logits (L, W, nO) per doc.

    encoder (Model): the wrapped torch grid encoder (``build_grid_encoder``).
    output_layer (Model): a ``Linear`` layer, W_O of eq. 17.
    max_span_width (Optional[int]): W, the band width; None leaves the dim
        ``nW`` to be set before ``initialize`` (by the knowfree component).
    batch_rows (int): most band rows scored in one torch call.
    evidence_layer (Optional[Model]): a ``Linear`` layer from token vectors to
        3 * nO scores (begin, inside, end per label) added to the span logits,
        or None.

    The output width ``nO`` (labels) is set before ``initialize``; to change
    it afterwards, use :func:`resize_span_head`. The output and evidence
    layers sit in thinc ``resizable`` containers for that; the refs
    ``output_layer`` and ``evidence_layer`` name the current ``Linear`` layers.
    """
    output: Model = resizable(output_layer, resize_layer=resize_linear)
    layers = [encoder, output]
    refs = {"encoder": encoder, "output_layer": output_layer, "resizable_output": output}
    if evidence_layer is not None:
        evidence: Model = resizable(evidence_layer, resize_layer=partial(resize_linear, blocks=3))
        layers.append(evidence)
        refs.update(evidence_layer=evidence_layer, resizable_evidence=evidence)
    return Model(
        "knowfree_span_grid",
        _forward,
        init=_init,
        layers=layers,
        refs=refs,  # type: ignore[arg-type]
        dims={"nO": None, "nW": max_span_width},
        attrs={"batch_rows": batch_rows},
    )


def resize_span_head(model: Model, n_out: int) -> Model:
    """Set the head's output width to ``n_out`` labels, resizing its output
    (and token-evidence) layer when it is already sized; the weights of the
    first ``min(old, new)`` outputs are kept, new outputs start as the layer's
    initializer makes them. RETURNS (Model): the head."""
    for name, width in (("output", n_out), ("evidence", 3 * n_out)):
        if model.has_ref(f"resizable_{name}"):
            container = resize_model(model.get_ref(f"resizable_{name}"), width)
            model.set_ref(f"{name}_layer", container.layers[0])
    if model.maybe_get_dim("nO") != n_out:
        model.set_dim("nO", n_out, force=True)  # the head has no params of its own
    return model


def resize_linear(layer: Model, n_out: int, *, blocks: int = 1) -> Model:
    """A ``Linear`` layer like ``layer`` with ``n_out`` outputs.

    The outputs are ``blocks`` equal blocks (the evidence layer's begin,
    inside and end scores); in each block the weights of the first
    ``min(old, new)`` outputs are copied. An uninitialized layer is resized in
    place. RETURNS (Model): the resized layer.
    """
    old_out = layer.maybe_get_dim("nO")
    if old_out == n_out:
        return layer
    if not layer.has_param("W"):
        layer.set_dim("nO", n_out, force=True)
        return layer
    resized = Linear(n_out, layer.get_dim("nI"))
    resized.init = layer.init  # the same initializers (e.g. zero_init for evidence)
    resized.initialize()
    old_block, new_block = old_out // blocks, n_out // blocks  # type: ignore[operator]
    keep = min(old_block, new_block)
    for name in ("W", "b"):
        old, new = layer.get_param(name), resized.get_param(name).copy()
        for k in range(blocks):
            new[k * new_block : k * new_block + keep] = old[k * old_block : k * old_block + keep]  # type: ignore[assignment]
        resized.set_param(name, new)
    return resized


def torch_encoder(model: Model) -> KnowFREEGridEncoder:
    """The torch module inside the head's encoder layer."""
    return cast(KnowFREEGridEncoder, model.get_ref("encoder").shims[0]._model)


def configure_encoder(model: Model) -> None:
    """Build the W-dependent parts of the torch encoder (before use or loading)."""
    if not model.has_dim("nW"):
        raise ValueError(Errors.KF310.format(name=model.name))
    width = model.get_dim("nW")
    encoder = torch_encoder(model)
    if encoder.max_span_width != width:
        encoder.configure(width)
        shim = cast(PyTorchShim, model.get_ref("encoder").shims[0])
        encoder.to(shim.device)


def _init(model: Model, X: Optional[InT] = None, Y=None) -> Model:
    if isinstance(X, tuple):  # (token vectors, n-gram evidence)
        X = X[0]
    configure_encoder(model)
    if model.has_dim("nO"):
        resize_span_head(model, model.get_dim("nO"))
    output_layer = model.get_ref("output_layer")
    evidence = model.get_ref("evidence_layer") if model.has_ref("evidence_layer") else None
    if X is not None and any(len(x) for x in X):
        # One forward pass materialises the lazily sized input projections
        # and tells the output layer its input width.
        tokens, n_valid = _rows(model, [x for x in X if len(x)][:8])
        (features, _), _ = model.get_ref("encoder")((tokens, n_valid), False)
        output_layer.initialize(X=features)
        if evidence is not None:
            evidence.initialize(X=tokens)
    else:
        output_layer.set_dim("nI", torch_encoder(model).grid_width)
        output_layer.initialize()
        if evidence is not None:
            evidence.initialize()
    return model


def _rows(model: Model, X: InT) -> Tuple[Floats2d, Ints1d]:
    """Concatenated tokens, and per row (= token) its cells inside its doc."""
    ops = model.ops
    width = model.get_dim("nW")
    lengths = numpy.asarray([x.shape[0] for x in X], dtype="int32")
    doc_ends = numpy.repeat(numpy.cumsum(lengths), lengths)
    n_valid = numpy.minimum(doc_ends - numpy.arange(int(lengths.sum())), width).astype("int32")
    tokens = ops.flatten(X) if len(X) else ops.alloc2f(0, 0)
    return tokens, ops.asarray1i(n_valid)  # type: ignore[arg-type]


def predict_span_logits(
    model: Model[InT, OutT], X: InT, n_columns: Optional[int] = None, *, int8: bool = False
) -> OutT:
    """Inference: the logits of the first ``n_columns`` output columns only
    (default: all ``nO``). The target labels come first, so the extension
    columns are never computed when ``n_columns`` is the number of targets.
    int8 (bool): run the encoder's Linear layers in int8 (CPU; see int8.py).

    X: token vectors per doc, or (token vectors, n-gram evidence) per doc.
    RETURNS (List[Floats3d]): per doc, (n_tokens, nW, n_columns) logits.
    """
    n_out = model.get_dim("nO")
    if n_columns is None:
        n_columns = n_out
    if not 0 < n_columns <= n_out:
        raise ValueError(Errors.KF311.format(n_columns=n_columns, n_out=n_out))
    return _span_logits(model, X, n_columns, is_train=False, int8=int8)[0]


def _forward(model: Model[InT, OutT], X: InT, is_train: bool) -> Tuple[OutT, Callable]:
    """X: token vectors per doc, or (token vectors, n-gram evidence) per doc
    (``ngram_evidence = true``: 3 × nO scores per token, see ngram_evidence.py).
    Every output column is computed (see :func:`predict_span_logits` for fewer)."""
    return _span_logits(model, X, model.get_dim("nO"), is_train)


def _span_logits(
    model: Model[InT, OutT], X: InT, n_columns: int, is_train: bool, int8: bool = False
) -> Tuple[OutT, Callable]:
    """Logits of every cell (cells past a document's end are 0)."""
    ops = model.ops
    wide = None
    if isinstance(X, tuple):
        X, wide = X
    width = model.get_dim("nW")
    batch_rows = int(model.attrs["batch_rows"])
    n_out = model.get_dim("nO")
    lengths = [x.shape[0] for x in X]
    tokens, n_valid = _rows(model, X)
    n_rows = tokens.shape[0]
    groups = [
        (first, min(first + batch_rows, n_rows), min(first + batch_rows + width - 1, n_rows))
        for first in range(0, n_rows, batch_rows)
    ]
    if is_train:
        Y_flat, backprops = _train_groups(model, tokens, n_valid, groups)
    else:
        Y_flat, backprops = _predict_groups(model, tokens, n_valid, groups, n_columns, int8), []
    bp_evidence = bp_dense = None
    evidence = []  # begin/inside/end scores per token: from the vectors, from n-grams
    if n_rows and model.has_ref("evidence_layer"):
        dense, bp_dense = model.get_ref("evidence_layer")(tokens, is_train)
        evidence.append(dense)
    if n_rows and wide is not None:
        evidence.append(ops.flatten(wide))
    if evidence:
        bp_evidence = _add_token_evidence(model, sum(evidence[1:], evidence[0]), Y_flat, n_out, n_columns, is_train)
    Y = ops.unflatten(Y_flat, ops.asarray1i(lengths)) if X else []

    def backprop(dY: OutT):
        dY_flat = ops.flatten(dY) if len(dY) else ops.alloc3f(0, width, n_out)
        d_tokens = ops.alloc2f(*tokens.shape)
        for (first, last, token_end), (cells, bp_encoder, bp_output) in zip(groups, backprops):
            d_logits = dY_flat[first:last].reshape((-1, n_out))[cells]  # type: ignore[index]
            d_tokens[first:token_end] += bp_encoder(bp_output(d_logits))
        d_evidence = bp_evidence(dY_flat) if bp_evidence is not None else None
        if bp_dense is not None:
            d_tokens += bp_dense(d_evidence)
        d_X = ops.unflatten(d_tokens, ops.asarray1i(lengths))
        if wide is None:
            return d_X
        if d_evidence is None:
            d_evidence = ops.alloc2f(n_rows, 3 * n_out)
        return d_X, ops.unflatten(d_evidence, ops.asarray1i(lengths))

    return Y, backprop  # type: ignore[return-value]


def _train_groups(
    model: Model, tokens: Floats2d, n_valid: Ints1d, groups: List[Tuple[int, int, int]]
) -> Tuple[Floats3d, List[tuple]]:
    """Logits (R, W, nO) of every row group, and each group's backprop state."""
    encoder, output_layer = model.get_ref("encoder"), model.get_ref("output_layer")
    width, n_out = model.get_dim("nW"), model.get_dim("nO")
    Y_flat = model.ops.alloc3f(tokens.shape[0], width, n_out)
    backprops = []
    for first, last, token_end in groups:
        (features, cells), bp_encoder = encoder((tokens[first:token_end], n_valid[first:last]), True)
        logits, bp_output = output_layer(features, True)
        Y_flat[first:last].reshape((-1, n_out))[cells] = logits
        backprops.append((cells, bp_encoder, bp_output))
    return Y_flat, backprops


def _predict_groups(
    model: Model, tokens: Floats2d, n_valid: Ints1d, groups: List[Tuple[int, int, int]], n_columns: int, int8: bool
) -> Floats3d:
    """Logits (R, W, n_columns) of every row group, computed in torch under
    ``torch.inference_mode``: the output layer's first ``n_columns`` rows are
    applied to the packed cells before they are laid onto the band, and
    nothing is kept for a backward pass."""
    module = int8_copy(torch_encoder(model)) if int8 else torch_encoder(model)
    device = cast(PyTorchShim, model.get_ref("encoder").shims[0]).device
    output_layer = model.get_ref("output_layer")
    width = model.get_dim("nW")
    with torch.inference_mode():
        W = xp2torch(output_layer.get_param("W")[:n_columns], device=device)
        b = xp2torch(output_layer.get_param("b")[:n_columns], device=device)
        tokens_t = xp2torch(tokens, device=device)
        n_valid_t = xp2torch(n_valid, device=device).long()
        Y_flat = torch.zeros((tokens.shape[0] * width, n_columns), device=device)
        was_training = module.training
        module.eval()
        try:
            for first, last, token_end in groups:
                features, cells = module(tokens_t[first:token_end], n_valid_t[first:last])
                Y_flat[first * width : last * width].index_copy_(0, cells, F.linear(features, W, b))
        finally:
            module.train(was_training)
    return cast(Floats3d, torch2xp(Y_flat.view(tokens.shape[0], width, n_columns)))


def _add_token_evidence(
    model: Model, evidence: Floats2d, Y_flat: Floats3d, n_out: int, n_columns: int, is_train: bool
) -> Optional[Callable]:
    """Add ``begin[s] + sum(inside[s..e]) + end[e]`` to every cell of
    ``Y_flat`` (R, W, n_columns), in place, from ``evidence`` (R, 3 * n_out):
    begin, inside and end scores of every label. Cells past a document's end
    get some value too; they are masked in the loss and at decoding.
    RETURNS the backprop callback to d_evidence (training) or None."""
    xp = model.ops.xp
    n_rows, width, _ = Y_flat.shape
    begin = evidence[:, :n_columns]
    inside = evidence[:, n_out : n_out + n_columns]
    end = evidence[:, 2 * n_out : 2 * n_out + n_columns]
    # prefix sums in float64: a batch has ~10^5 tokens, and a difference of two
    # large float32 sums would lose the small ones
    prefix = xp.concatenate([xp.zeros((1, n_columns), dtype="float64"), xp.cumsum(inside, axis=0, dtype="float64")])
    last = xp.minimum(xp.arange(n_rows)[:, None] + xp.arange(width)[None, :], n_rows - 1)
    Y_flat += ((begin - prefix[:-1])[:, None, :] + (end + prefix[1:])[last]).astype("float32")
    if not is_train:
        return None

    def backprop(dY: Floats3d) -> Floats2d:
        d_begin = dY.sum(axis=1)  # type: ignore[call-overload]
        # d_at_end[e]: the gradient of every cell whose last token is e
        d_at_end = xp.zeros((n_rows, n_out), dtype=dY.dtype)
        for k in range(width):
            if k < n_rows:
                d_at_end[k:] += dY[: n_rows - k, k]
            if k:  # cells past the last token were clipped to it in the forward pass
                d_at_end[n_rows - 1] += dY[max(n_rows - k, 0) :, k].sum(axis=0)
        # inside[t] enters every cell with s <= t <= e: (cells ending at >= t)
        # minus (cells starting after t)
        ends_from = xp.cumsum(d_at_end[::-1], axis=0)[::-1]
        starts_after = xp.concatenate(
            [xp.cumsum(d_begin[::-1], axis=0)[::-1][1:], xp.zeros((1, n_out), dtype=dY.dtype)]
        )
        d_evidence = xp.concatenate([d_begin, ends_from - starts_after, d_at_end], axis=1)
        return xp.ascontiguousarray(d_evidence, dtype="float32")

    return backprop


def auto_span_width(lengths: Sequence[int]) -> int:
    """The band width of ``max_span_width = "auto"`` for target spans of these
    lengths (in tokens): the longest plus a margin of a quarter of it (at
    least ``AUTO_WIDTH_MIN_MARGIN``), rounded up to a multiple of
    ``AUTO_WIDTH_STEP``, capped at ``AUTO_WIDTH_CAP``; e.g. 4 -> 8, 10 -> 16,
    25 -> 32. Longer spans are reported at ``initialize`` (KW001)."""
    longest = max(lengths, default=1)
    wanted = longest + max(AUTO_WIDTH_MIN_MARGIN, math.ceil(longest / 4))
    return min(AUTO_WIDTH_CAP, AUTO_WIDTH_STEP * math.ceil(wanted / AUTO_WIDTH_STEP))
