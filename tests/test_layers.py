"""The KnowFREE model layers: shapes, the local attention mask, chunking, the band."""

import numpy
import pytest
import torch
from spacy.util import registry
from thinc.api import Linear

from spacy_knowfree.layers.span_grid import (
    build_grid_encoder,
    configure_encoder,
    predict_span_logits,
    resize_span_head,
    span_grid_head,
)
from spacy_knowfree.layers.torch_grid import (
    KnowFREEGridEncoder,
    LocalBandAttention,
    band_index,
    valid_cell_mask,
)


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


def banded(encoder: KnowFREEGridEncoder, tokens: torch.Tensor, n_valid: torch.Tensor) -> torch.Tensor:
    """The encoder's packed features laid onto the (R, W, D~) band (0 past a doc's end)."""
    features, cells = encoder(tokens, n_valid)
    out = torch.zeros(len(n_valid) * encoder.max_span_width, features.shape[-1])
    out[cells] = features
    return out.view(len(n_valid), encoder.max_span_width, -1)


def one_row(attention: LocalBandAttention, grid: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Attention over the W cells of one band row, ``valid`` of them in the doc."""
    width = grid.shape[1]
    length = torch.full((width,), int(valid.sum()))
    return attention(grid[0], torch.arange(width), length).unsqueeze(0)


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
    n_valid = torch.tensor([6, 6, 6, 6, 6, 6, 5, 2, 1])
    features, cells = encoder(tokens, n_valid)
    assert features.shape == (int(n_valid.sum()), 20)  # only the cells inside the doc
    assert cells.tolist() == valid_cell_mask(n_valid, 6).view(-1).nonzero().view(-1).tolist()
    out = banded(encoder, tokens, n_valid)
    assert out.shape == (9, 6, 20)
    assert torch.isfinite(out).all()


def test_band_index_and_valid_cells():
    band = band_index(torch.arange(5), width=3, n_tokens=5)
    assert band.tolist() == [[0, 1, 2], [1, 2, 3], [2, 3, 4], [3, 4, 4], [4, 4, 4]]
    valid = valid_cell_mask(torch.tensor([3, 3, 3, 2, 1]), 3)
    assert valid.tolist() == [[True] * 3, [True] * 3, [True] * 3, [True, True, False], [True, False, False]]


def test_local_attention_blocks_cells_outside_the_window():
    torch.manual_seed(0)
    window, width = 2, 8
    attention = LocalBandAttention(width=10, n_heads=2, window=window).eval()
    grid = torch.randn(1, width, 10)
    valid = torch.ones(1, width, dtype=torch.bool)
    base = one_row(attention, grid, valid)
    far = grid.clone()
    far[0, 7] += 5.0  # |0 - 7| > window: invisible from cell 0
    out_far = one_row(attention, far, valid)
    assert torch.allclose(out_far[0, 0], base[0, 0], atol=1e-6)
    assert torch.allclose(out_far[0, 4], base[0, 4], atol=1e-6)
    assert not torch.allclose(out_far[0, 6], base[0, 6], atol=1e-4)
    near = grid.clone()
    near[0, 2] += 5.0  # |0 - 2| == window: visible from cell 0
    assert not torch.allclose(one_row(attention, near, valid)[0, 0], base[0, 0], atol=1e-4)


def test_local_attention_ignores_cells_past_the_end_of_the_document():
    torch.manual_seed(0)
    attention = LocalBandAttention(width=10, n_heads=2, window=3).eval()
    grid = torch.randn(1, 6, 10)
    valid = torch.tensor([[True, True, True, False, False, False]])
    base = one_row(attention, grid, valid)
    changed = grid.clone()
    changed[0, 3:] = torch.randn(3, 10) * 10
    out = one_row(attention, changed, valid)
    assert torch.allclose(out[0, :3], base[0, :3], atol=1e-6)
    assert torch.isfinite(out).all()


def test_span_row_depends_only_on_tokens_inside_the_band():
    """Row i only sees tokens i .. i+W-1, which makes row groups exact."""
    torch.manual_seed(0)
    encoder = make_encoder(width=4)
    tokens = torch.randn(12, 8)
    rows = torch.arange(12)
    n_valid = torch.clamp(12 - rows, max=4)
    base = banded(encoder, tokens, n_valid)
    changed = tokens.clone()
    changed[9] += 3.0  # outside the band of rows 0..5 (ends at 3..8)
    out = banded(encoder, changed, n_valid)
    assert torch.allclose(out[:6], base[:6], atol=1e-5)
    assert not torch.allclose(out[6:10], base[6:10], atol=1e-4)


def test_rows_of_concatenated_documents_do_not_see_each_other():
    torch.manual_seed(0)
    encoder = make_encoder(width=4)
    doc_a, doc_b = torch.randn(5, 8), torch.randn(3, 8)
    alone = banded(encoder, doc_a, torch.clamp(5 - torch.arange(5), max=4))
    both = banded(encoder, torch.cat([doc_a, doc_b]), torch.clamp(5 - torch.arange(5), max=4))
    valid = valid_cell_mask(torch.clamp(5 - torch.arange(5), max=4), 4)
    assert torch.allclose(alone[valid], both[valid], atol=1e-5)


def test_inside_pooling_adds_the_mean_projection_of_each_span():
    torch.manual_seed(0)
    encoder = make_encoder(width=4, inside_pooling=True)
    tokens = torch.randn(7, 8)
    n_valid = torch.clamp(7 - torch.arange(7), max=4)
    means = encoder.inside_mean(tokens, 7, 4)
    projected = encoder.inside_proj(tokens)
    for r in range(7):
        for k in range(int(n_valid[r])):
            assert torch.allclose(means[r, k], projected[r : r + k + 1].mean(0), atol=1e-5)
    # the term changes the features, and only the model built with it has it
    plain = make_encoder(width=4)
    plain.load_state_dict({name: value for name, value in encoder.state_dict().items() if "inside" not in name})
    assert not torch.allclose(banded(plain, tokens, n_valid), banded(encoder, tokens, n_valid), atol=1e-3)
    assert not any("inside" in name for name in plain.state_dict())


def test_span_rows_stay_inside_their_band_with_inside_pooling():
    torch.manual_seed(0)
    encoder = make_encoder(width=4, inside_pooling=True)
    tokens = torch.randn(12, 8)
    n_valid = torch.clamp(12 - torch.arange(12), max=4)
    base = banded(encoder, tokens, n_valid)
    changed = tokens.clone()
    changed[9] += 3.0
    assert torch.allclose(banded(encoder, changed, n_valid)[:6], base[:6], atol=1e-5)


def _head(batch_rows: int, width: int = 5, n_out: int = 3, inside_pooling: bool = False):
    torch.manual_seed(1)
    encoder = KnowFREEGridEncoder(
        hidden_width=16,
        grid_width=20,
        n_biaffine_heads=4,
        n_attention_heads=5,
        attention_window=1,
        dropout=0.0,
        inside_pooling=inside_pooling,
    )
    head = span_grid_head(build_grid_encoder(encoder), Linear(), max_span_width=width, batch_rows=batch_rows)
    head.set_dim("nO", n_out)
    return head


@pytest.mark.parametrize("inside_pooling", [False, True])
def test_head_shapes_and_row_groups_give_identical_logits(inside_pooling):
    rng = numpy.random.default_rng(0)
    X = [rng.normal(size=(n, 8)).astype("float32") for n in (23, 1, 0, 9)]
    whole = _head(batch_rows=64, inside_pooling=inside_pooling)
    whole.initialize(X=X)
    chunked = _head(batch_rows=3, inside_pooling=inside_pooling)
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
    target_only = predict_span_logits(head, X, 2)[0]
    assert target_only.shape == (7, 5, 2)
    numpy.testing.assert_allclose(target_only, full[..., :2], atol=1e-5)
    assert predict_span_logits(head, X)[0].shape == full.shape == (7, 5, 5)
    with pytest.raises(ValueError, match="KF311"):
        predict_span_logits(head, X, 6)


def test_configure_encoder_follows_max_span_width():
    head = _head(batch_rows=8, width=7)
    configure_encoder(head)
    encoder = head.get_ref("encoder").shims[0]._model
    assert encoder.biaffine.width_embedding.num_embeddings == 7


def test_resizing_the_head_keeps_the_weights_of_the_first_outputs():
    rng = numpy.random.default_rng(0)
    X = [rng.normal(size=(6, 8)).astype("float32")]
    head = _head(batch_rows=64, n_out=3)
    head.initialize(X=X)
    before = head.predict(X)[0]
    old_W = head.get_ref("output_layer").get_param("W").copy()
    resize_span_head(head, 5)
    assert head.get_dim("nO") == 5
    output = head.get_ref("output_layer")
    assert output.get_param("W").shape == (5, old_W.shape[1])
    numpy.testing.assert_array_equal(output.get_param("W")[:3], old_W)
    assert output in list(head.walk())  # the ref follows the resizable container
    after = head.predict(X)[0]
    numpy.testing.assert_allclose(after[..., :3], before, atol=1e-6)
    resize_span_head(head, 2)
    numpy.testing.assert_allclose(head.predict(X)[0], before[..., :2], atol=1e-6)


def test_max_span_width_is_an_architecture_argument():
    build = registry.architectures.get("spacy-knowfree.KnowFREE.v1")
    model = build(tok2vec=Linear(4, 4), max_span_width=12)
    assert model.get_ref("head").get_dim("nW") == 12
    assert not build(tok2vec=Linear(4, 4)).get_ref("head").has_dim("nW")  # "auto"
    for bad in (0, "wide", True):
        with pytest.raises(ValueError, match="KF007.*max_span_width"):
            build(tok2vec=Linear(4, 4), max_span_width=bad)
