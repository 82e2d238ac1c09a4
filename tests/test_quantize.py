"""int8 inference (``int8 = true``, ``knowfree quantize``): same spans as
float32, close logits, save/load round trip, weights followed after updates."""

import numpy
import pytest
import spacy
import torch
from spacy.tokens import DocBin

from spacy_knowfree.layers.int8 import int8_copy
from spacy_knowfree.layers.span_grid import torch_encoder

from _cli import quiet, run  # noqa: F401
from _examples import EXTENSION, FLAT, make_examples, make_nlp, span_tuples, train


@pytest.fixture(scope="module")
def trained():
    nlp = make_nlp()
    examples = make_examples(nlp, FLAT, extension=EXTENSION)
    assert train(nlp, examples) == 1.0
    return nlp, examples


def test_int8_copy_quantizes_the_cell_projection_only(trained):
    nlp, _ = trained
    encoder = torch_encoder(nlp.get_pipe("knowfree").model.get_ref("head"))
    quantized = int8_copy(encoder)
    assert quantized is int8_copy(encoder)  # cached while the weights stay
    assert "quantized" in type(quantized.attention.qkv).__module__
    # the per-token layers stay float32 (quantized, they cost accuracy on dev)
    for name in ("start_proj", "end_proj"):
        assert type(getattr(quantized, name)) is torch.nn.Linear
    assert type(quantized.biaffine.affine_end) is torch.nn.Linear
    assert type(encoder.attention.qkv) is torch.nn.Linear  # the float module is untouched
    torch.testing.assert_close(quantized.biaffine.bilinear, encoder.biaffine.bilinear)


def test_quantize_cli_round_trip(trained, tmp_path, capsys):
    nlp, examples = trained
    nlp.to_disk(tmp_path / "float")
    DocBin(docs=[eg.reference for eg in examples]).to_disk(tmp_path / "gold.spacy")
    out_dir = tmp_path / "not" / "yet" / "int8"  # folders that do not exist yet are made
    code, out = run(capsys, "quantize", tmp_path / "float", out_dir, "--data", tmp_path / "gold.spacy")
    assert code == 0, out
    assert "spans_sc_f" in out and "int8" in out
    loaded = spacy.load(out_dir)
    knowfree = loaded.get_pipe("knowfree")
    assert knowfree.cfg["int8"] is True
    assert loaded.config["components"]["knowfree"]["int8"] is True
    float_nlp = spacy.load(tmp_path / "float")
    assert float_nlp.get_pipe("knowfree").cfg["int8"] is False
    texts = [text for text, _ in FLAT] + ["张三和李四去北京大学"]
    # the same spans where the model is sure (its training texts); on a new
    # text a span near the threshold may flip, so only the logits are compared
    trained_texts = texts[: len(FLAT)]
    assert [span_tuples(d) for d in loaded.pipe(trained_texts)] == [
        span_tuples(d) for d in float_nlp.pipe(trained_texts)
    ]
    docs = [loaded.make_doc(text) for text in texts]
    int8_logits = knowfree.predict(docs)
    float_logits = float_nlp.get_pipe("knowfree").predict(docs)
    for a, b in zip(int8_logits, float_logits):
        assert not numpy.array_equal(a, b)  # the int8 path ran
        numpy.testing.assert_allclose(a, b, atol=0.05 * float(numpy.abs(b).max()))
    # bytes round trip keeps the setting
    again = make_nlp().from_bytes(loaded.to_bytes())
    assert again.get_pipe("knowfree").cfg["int8"] is True
    numpy.testing.assert_array_equal(again.get_pipe("knowfree").predict(docs)[0], int8_logits[0])


def test_int8_follows_the_weights_after_an_update():
    nlp = make_nlp(int8=True)
    examples = make_examples(nlp, FLAT)
    optimizer = nlp.initialize(lambda: examples)
    knowfree = nlp.get_pipe("knowfree")
    docs = [eg.predicted for eg in examples]
    before = knowfree.predict(docs)[0]
    for _ in range(5):
        nlp.update(examples, sgd=optimizer, drop=0.0)
    after = knowfree.predict(docs)[0]
    knowfree.cfg["int8"] = False
    exact = knowfree.predict(docs)[0]
    # a stale int8 copy would still give the logits from before the updates
    assert numpy.abs(after - exact).max() < 0.5 * numpy.abs(before - exact).max()


def test_quantize_cli_needs_a_knowfree_pipeline(tmp_path, capsys):
    nlp = spacy.blank("zh")
    nlp.add_pipe("sentencizer")
    nlp.to_disk(tmp_path / "p")
    code, out = run(capsys, "quantize", tmp_path / "p", tmp_path / "out")
    assert code == 1 and "KF401" in out
    assert not (tmp_path / "out").exists()
