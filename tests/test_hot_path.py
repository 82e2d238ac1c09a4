"""The rewritten span-grid hot path (packed cells, batched biaffine, blocked
band attention, torch inference path) against the straightforward reference
it replaced: same logits within 1e-5 and same gradients on random inputs."""

import copy
from typing import Tuple

import numpy
import pytest
import torch
from thinc.api import Linear
from torch.nn import functional as F

from spacy_knowfree.layers.span_grid import (
    build_grid_encoder,
    predict_span_logits,
    span_grid_head,
    torch_encoder,
)
from spacy_knowfree.layers.torch_grid import (
    KnowFREEGridEncoder,
    LocalBandAttention,
    MultiHeadBiaffine,
    band_index,
    valid_cell_mask,
)

# ------------------------------------------------------ reference (before the rewrite)


def reference_biaffine(
    bi: MultiHeadBiaffine, h_start: torch.Tensor, h_end: torch.Tensor, band: torch.Tensor
) -> torch.Tensor:
    rows, width = band.shape
    hs = h_start.view(rows, bi.n_heads, bi.in_head)
    he = h_end[band].view(rows, width, bi.n_heads, bi.in_head)
    left = torch.einsum("rhx,hoxy->rhoy", hs, bi.bilinear)
    bilinear = torch.einsum("rhoy,rkhy->rkho", left, he).reshape(rows, width, -1)
    affine = bi.affine_start(h_start).unsqueeze(1) + bi.affine_end(h_end)[band] + bi.width_embedding.weight.unsqueeze(0)
    return bilinear + affine


def reference_attention(att: LocalBandAttention, grid: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    rows, width, dim = grid.shape

    def split(x: torch.Tensor) -> torch.Tensor:
        return x.reshape(rows, width, att.n_heads, att.head_width).transpose(1, 2)

    q, k, v = (split(x) for x in att.qkv(grid).chunk(3, dim=-1))
    offsets = torch.arange(width)
    window_mask = (offsets.view(-1, 1) - offsets.view(1, -1)).abs() <= att.window
    allowed = window_mask.unsqueeze(0) & valid.unsqueeze(1)
    allowed = allowed | torch.eye(width, dtype=torch.bool)
    attended = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed.unsqueeze(1))
    return att.norm(attended.transpose(1, 2).reshape(rows, width, dim))


def reference_encoder(enc: KnowFREEGridEncoder, tokens: torch.Tensor, n_valid: torch.Tensor) -> torch.Tensor:
    """(R, W, D~) features of every cell, dropout off."""
    width, rows = enc.max_span_width, n_valid.shape[0]
    row_start = torch.arange(rows)
    h_end = F.leaky_relu(enc.end_proj(tokens))
    h_start = F.leaky_relu(enc.start_proj(tokens[row_start]))
    band = band_index(row_start, width, tokens.shape[0])
    valid = valid_cell_mask(n_valid, width)
    h_b = reference_biaffine(enc.biaffine, h_start, h_end, band)
    h_b = h_b.masked_fill(~valid.unsqueeze(-1), 0.0)
    h_attn = reference_attention(enc.attention, h_b, valid)
    h_g = enc.residual_norm(h_b + h_attn)
    return h_b + h_g


# ------------------------------------------------------------------------ tests

LENGTHS = (1, 3, 7, 8, 13, 40)  # shorter than, equal to and longer than the band


def random_docs(seed: int, width: int = 8) -> Tuple[list, torch.Tensor, torch.Tensor]:
    rng = numpy.random.default_rng(seed)
    X = [rng.normal(size=(n, 12)).astype("float32") for n in LENGTHS]
    ends = numpy.repeat(numpy.cumsum(LENGTHS), LENGTHS)
    n_valid = numpy.minimum(ends - numpy.arange(sum(LENGTHS)), width)
    return X, torch.from_numpy(numpy.concatenate(X)), torch.from_numpy(n_valid)


def make_head(width: int, batch_rows: int, window: int = 2):
    torch.manual_seed(0)
    encoder = KnowFREEGridEncoder(
        hidden_width=16, grid_width=20, n_biaffine_heads=4, n_attention_heads=5, attention_window=window, dropout=0.0
    )
    head = span_grid_head(build_grid_encoder(encoder), Linear(), max_span_width=width, batch_rows=batch_rows)
    head.set_dim("nO", 3)
    return head


@pytest.mark.parametrize("width,window", [(8, 2), (5, 3), (1, 1), (32, 3)])
def test_encoder_features_equal_the_reference(width, window):
    torch.manual_seed(width)
    encoder = KnowFREEGridEncoder(
        hidden_width=16, grid_width=20, n_biaffine_heads=4, n_attention_heads=5, attention_window=window, dropout=0.0
    )
    encoder.configure(width)
    _, tokens, n_valid = random_docs(width, width)
    encoder(tokens, n_valid)  # materialise the lazy projections
    with torch.no_grad():
        for p in encoder.parameters():  # layer norms start at 1/0: make them count
            p.add_(torch.randn_like(p) * 0.1)
    encoder.eval()
    with torch.no_grad():
        features, cells = encoder(tokens, n_valid)
        expected = reference_encoder(encoder, tokens, n_valid)
    valid = valid_cell_mask(n_valid, width).view(-1)
    assert cells.tolist() == valid.nonzero().view(-1).tolist()
    numpy.testing.assert_allclose(features.numpy(), expected.reshape(-1, 20)[valid].numpy(), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("batch_rows", [1000, 5])
def test_head_logits_and_gradients_equal_the_reference(batch_rows):
    width = 8
    X, tokens, n_valid = random_docs(1, width)
    head = make_head(width, batch_rows)
    head.initialize(X=X)
    encoder = torch_encoder(head)
    W = torch.from_numpy(head.get_ref("output_layer").get_param("W"))
    b = torch.from_numpy(head.get_ref("output_layer").get_param("b"))
    valid = valid_cell_mask(n_valid, width)
    reference_module = copy.deepcopy(encoder).eval()
    ref_tokens = tokens.clone().requires_grad_(True)
    reference = reference_encoder(reference_module, ref_tokens, n_valid) @ W.T + b
    # inference: all columns, and the first two only
    predicted = numpy.concatenate(head.predict(X))
    numpy.testing.assert_allclose(predicted[valid.numpy()], reference[valid].detach().numpy(), atol=1e-5, rtol=1e-5)
    assert not predicted[~valid.numpy()].any()  # cells past a doc's end: 0
    two = numpy.concatenate(predict_span_logits(head, X, 2))
    numpy.testing.assert_allclose(two, predicted[..., :2], atol=1e-6)
    # training: same logits, and the same gradients for the tokens and weights
    Y, backprop = head.begin_update(X)
    numpy.testing.assert_allclose(
        numpy.concatenate(Y)[valid.numpy()], reference[valid].detach().numpy(), atol=1e-5, rtol=1e-5
    )
    rng = numpy.random.default_rng(2)
    dY = [rng.normal(size=y.shape).astype("float32") for y in Y]
    d_X = numpy.concatenate(backprop(dY))
    (reference[valid] * torch.from_numpy(numpy.concatenate(dY))[valid]).sum().backward()
    numpy.testing.assert_allclose(d_X, ref_tokens.grad.numpy(), atol=1e-4, rtol=1e-4)
    for name in ("attention.qkv.weight", "biaffine.bilinear", "biaffine.width_embedding.weight"):
        got = dict(encoder.named_parameters())[name].grad
        want = dict(reference_module.named_parameters())[name].grad
        numpy.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-4, rtol=1e-4)
