"""The KnowFREE model layers: shapes, the local attention mask, chunking, the band."""
import numpy
import pytest
import torch
from spacy.util import registry

from spacy_knowfree.layers.span_grid import configure_encoder, span_grid_head, build_grid_encoder
from spacy_knowfree.layers.torch_grid import (
    KnowFREEGridEncoder,
    LocalBandAttention,
    band_index,
    valid_cell_mask,
)
from thinc.api import Linear


def make_encoder(width: int = 6, **overrides) -> KnowFREEGridEncoder:
    settings = dict(
        hidden_width=16,
        grid_width=20,
        n_biaffine_heads=4,
        n_attention_heads=5,
        attention_window=1,
        dropout=0.0,
    )
    settings.update(overrides)
    encoder = KnowFREEGridEncoder(**settings)
    encoder.configure(width)
    encoder.eval()
    return encoder


def test_architecture_is_registered_and_validates_sizes():
    build = registry.architectures.get("spacy-knowfree.KnowFREE.v1")
    with pytest.raises(ValueError, match="KF007.*n_attention_heads"):
        build(tok2vec=Linear(4, 4), grid_width=200, n_attention_heads=7)
    with pytest.raises(ValueError, match="KF007.*n_biaffine_heads"):
        build(tok2vec=Linear(4, 4), hidden_width=200, n_biaffine_heads=3)


def test_encoder_output_shape_is_banded():
    torch.manual_seed(0)
    encoder = make_encoder(width=6)
    tokens = torch.randn(11, 8)
    out = encoder(tokens, torch.arange(9), torch.tensor([6, 6, 6, 6, 6, 6, 5, 2, 1]))
    assert out.shape == (9, 6, 20)
    assert torch.isfinite(out).all()


def test_band_index_and_valid_cells():
    band = band_index(torch.arange(5), width=3, n_tokens=5)
    assert band.tolist() == [[0, 1, 2], [1, 2, 3], [2, 3, 4], [3, 4, 4], [4, 4, 4]]
    valid = valid_cell_mask(torch.tensor([3, 3, 3, 2, 1]), 3)
    assert valid.tolist() == [[True] * 3, [True] * 3, [True] * 3, [True, True, False],
                              [True, False, False]]


def test_local_attention_blocks_cells_outside_the_window():
    torch.manual_seed(0)
    window, width = 2, 8
    attention = LocalBandAttention(width=10, n_heads=2, window=window).eval()
    grid = torch.randn(1, width, 10)
    valid = torch.ones(1, width, dtype=torch.bool)
    base = attention(grid, valid)
    far = grid.clone()
    far[0, 7] += 5.0  # |0 - 7| > window: invisible from cell 0
    out_far = attention(far, valid)
    assert torch.allclose(out_far[0, 0], base[0, 0], atol=1e-6)
    assert torch.allclose(out_far[0, 4], base[0, 4], atol=1e-6)
    assert not torch.allclose(out_far[0, 6], base[0, 6], atol=1e-4)
    near = grid.clone()
    near[0, 2] += 5.0  # |0 - 2| == window: visible from cell 0
    assert not torch.allclose(attention(near, valid)[0, 0], base[0, 0], atol=1e-4)


def test_local_attention_ignores_cells_past_the_end_of_the_document():
    torch.manual_seed(0)
    attention = LocalBandAttention(width=10, n_heads=2, window=3).eval()
    grid = torch.randn(1, 6, 10)
    valid = torch.tensor([[True, True, True, False, False, False]])
    base = attention(grid, valid)
    changed = grid.clone()
    changed[0, 3:] = torch.randn(3, 10) * 10
    out = attention(changed, valid)
    assert torch.allclose(out[0, :3], base[0, :3], atol=1e-6)
    assert torch.isfinite(out).all()


def test_span_row_depends_only_on_tokens_inside_the_band():
    """Row i only sees tokens i .. i+W-1, which makes row groups exact."""
    torch.manual_seed(0)
    encoder = make_encoder(width=4)
    tokens = torch.randn(12, 8)
    rows = torch.arange(12)
    n_valid = torch.clamp(12 - rows, max=4)
    base = encoder(tokens, rows, n_valid)
    changed = tokens.clone()
    changed[9] += 3.0  # outside the band of rows 0..5 (ends at 3..8)
    out = encoder(changed, rows, n_valid)
    assert torch.allclose(out[:6], base[:6], atol=1e-5)
    assert not torch.allclose(out[6:10], base[6:10], atol=1e-4)


def test_rows_of_concatenated_documents_do_not_see_each_other():
    torch.manual_seed(0)
    encoder = make_encoder(width=4)
    doc_a, doc_b = torch.randn(5, 8), torch.randn(3, 8)
    alone = encoder(doc_a, torch.arange(5), torch.clamp(5 - torch.arange(5), max=4))
    both = encoder(torch.cat([doc_a, doc_b]), torch.arange(5),
                   torch.clamp(5 - torch.arange(5), max=4))
    valid = valid_cell_mask(torch.clamp(5 - torch.arange(5), max=4), 4)
    assert torch.allclose(alone[valid], both[valid], atol=1e-5)


def _head(batch_rows: int, width: int = 5, n_out: int = 3):
    torch.manual_seed(1)
    encoder = KnowFREEGridEncoder(hidden_width=16, grid_width=20, n_biaffine_heads=4,
                                  n_attention_heads=5, attention_window=1, dropout=0.0)
    head = span_grid_head(build_grid_encoder(encoder), Linear(), batch_rows=batch_rows)
    head.attrs["max_span_width"] = width
    head.set_dim("nO", n_out)
    return head


def test_head_shapes_and_row_groups_give_identical_logits():
    rng = numpy.random.default_rng(0)
    X = [rng.normal(size=(n, 8)).astype("float32") for n in (23, 1, 0, 9)]
    whole = _head(batch_rows=64)
    whole.initialize(X=X)
    chunked = _head(batch_rows=3)
    chunked.initialize(X=X)
    chunked.from_bytes(whole.to_bytes())
    Y_whole = whole.predict(X)
    Y_chunked = chunked.predict(X)
    assert [y.shape for y in Y_whole] == [(23, 5, 3), (1, 5, 3), (0, 5, 3), (9, 5, 3)]
    for a, b in zip(Y_whole, Y_chunked):
        numpy.testing.assert_allclose(a, b, atol=1e-5)


def test_head_backprop_matches_row_groups():
    rng = numpy.random.default_rng(0)
    X = [rng.normal(size=(n, 8)).astype("float32") for n in (17, 6)]
    whole = _head(batch_rows=64)
    whole.initialize(X=X)
    chunked = _head(batch_rows=4)
    chunked.initialize(X=X)
    chunked.from_bytes(whole.to_bytes())
    dY = [rng.normal(size=(len(x), 5, 3)).astype("float32") for x in X]
    _, bp_whole = whole.begin_update(X)
    _, bp_chunked = chunked.begin_update(X)
    for a, b in zip(bp_whole(dY), bp_chunked(dY)):
        numpy.testing.assert_allclose(a, b, atol=1e-4)


def test_prediction_computes_only_the_requested_columns():
    rng = numpy.random.default_rng(0)
    X = [rng.normal(size=(7, 8)).astype("float32")]
    head = _head(batch_rows=64, n_out=5)
    head.initialize(X=X)
    full = head.predict(X)[0]
    head.attrs["n_predict_columns"] = 2
    target_only = head.predict(X)[0]
    assert target_only.shape == (7, 5, 2)
    numpy.testing.assert_allclose(target_only, full[..., :2], atol=1e-5)


def test_configure_encoder_follows_max_span_width():
    head = _head(batch_rows=8, width=7)
    configure_encoder(head)
    encoder = head.get_ref("encoder").shims[0]._model
    assert encoder.biaffine.width_embedding.num_embeddings == 7
