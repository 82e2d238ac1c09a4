"""The ``knowfree`` component: training, decoding, loss weights, serialization."""

import subprocess
import sys
import warnings

import numpy
import pytest
import spacy
from spacy.tokens import DocBin

from spacy_knowfree.decoding import decode_grid

from _examples import EXTENSION, FLAT, NESTED, make_examples, make_nlp, span_tuples, train


@pytest.fixture(scope="module")
def trained_flat():
    nlp = make_nlp()
    examples = make_examples(nlp, FLAT, extension=EXTENSION)
    score = train(nlp, examples)
    return nlp, examples, score


def test_factory_is_available_without_import():
    code = (
        "import spacy, sys; nlp = spacy.blank('zh'); nlp.add_pipe('knowfree'); "
        "nlp.add_pipe('knowfree_lexicon'); "
        "assert 'spacy_knowfree.component' in sys.modules; print(nlp.pipe_names)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "knowfree" in out.stdout


def test_overfit_flat_reaches_perfect_training_f1(trained_flat):
    nlp, examples, score = trained_flat
    assert score == 1.0
    for eg in examples:
        doc = nlp(eg.reference.text)
        assert span_tuples(doc) == span_tuples(eg.reference)
        scores = doc.spans["sc"].attrs["scores"]
        assert len(scores) == len(doc.spans["sc"])
        assert all(0.5 < s <= 1.0 for s in scores)


def test_overfit_nested_reaches_perfect_training_f1():
    nlp = make_nlp(nested=True)
    examples = make_examples(nlp, NESTED)
    assert train(nlp, examples) == 1.0
    doc = nlp("北京大学在北京")
    assert sorted(span_tuples(doc)) == sorted([(0, 4, "ORG"), (0, 2, "LOC"), (5, 7, "LOC")])


def test_extension_labels_are_trained_but_never_predicted(trained_flat):
    nlp, _, _ = trained_flat
    knowfree = nlp.get_pipe("knowfree")
    assert set(knowfree.extension_labels) == {"ENT:人名", "ENT:地名", "POS:VERB"}
    # Make every extension column fire everywhere: predictions must not change.
    before = [span_tuples(nlp(text)) for text, _ in FLAT]
    output = knowfree.model.get_ref("head").get_ref("output_layer")
    bias = output.get_param("b").copy()
    boosted = bias.copy()
    boosted[len(knowfree.labels) :] = 100.0
    output.set_param("b", boosted)
    try:
        after = [span_tuples(nlp(text)) for text, _ in FLAT]
        scores = knowfree.predict([nlp.make_doc(FLAT[0][0])])
        assert scores[0].shape[-1] == len(knowfree.labels)
    finally:
        output.set_param("b", bias)
    assert after == before
    assert all(label in knowfree.labels for doc in after for _, _, label in doc)


def _loss(nlp, examples):
    """Loss on deterministic (dropout-free) logits of all columns."""
    knowfree = nlp.get_pipe("knowfree")
    scores = knowfree.model.predict([eg.predicted for eg in examples])
    return knowfree.get_loss(examples, scores)


def test_alpha_scales_the_extension_loss_as_equation_18():
    nlp = make_nlp()
    examples = make_examples(nlp, FLAT[:2], extension=EXTENSION)
    nlp.initialize(lambda: examples)
    knowfree = nlp.get_pipe("knowfree")
    losses, grads = {}, {}
    for alpha in (0.0, 1.0, 0.13):
        knowfree.cfg["alpha"] = alpha
        losses[alpha], grads[alpha] = _loss(nlp, examples)
    target, extension = losses[0.0], losses[1.0] - losses[0.0]
    assert extension > 0
    assert losses[0.13] == pytest.approx(target + 0.13 * extension, rel=1e-5)
    n_tgt = len(knowfree.labels)
    for g0, g1, g13 in zip(grads[0.0], grads[1.0], grads[0.13]):
        assert not g0[..., n_tgt:].any()
        numpy.testing.assert_allclose(g13[..., n_tgt:], 0.13 * g1[..., n_tgt:], rtol=1e-5)
        numpy.testing.assert_allclose(g13[..., :n_tgt], g0[..., :n_tgt], rtol=1e-6)


def test_beta_scales_synthetic_documents_as_equation_19():
    nlp = make_nlp()
    synthetic_text = FLAT[1][0]
    examples = make_examples(nlp, FLAT[:3], extension=EXTENSION, synthetic=[synthetic_text])
    nlp.initialize(lambda: examples)
    knowfree = nlp.get_pipe("knowfree")
    real = [eg for eg in examples if eg.reference.text != synthetic_text]
    syn = [eg for eg in examples if eg.reference.text == synthetic_text]
    knowfree.cfg["beta"] = 1.0
    real_sum = _loss(nlp, real)[0] * len(real)
    syn_sum = _loss(nlp, syn)[0] * len(syn)
    for beta in (0.0, 0.5, 2.0):
        knowfree.cfg["beta"] = beta
        total = _loss(nlp, examples)[0] * len(examples)
        assert total == pytest.approx(real_sum + beta * syn_sum, rel=1e-5)


def test_synthetic_flag_survives_docbin_round_trip():
    nlp = make_nlp()
    examples = make_examples(nlp, FLAT[:2], synthetic=[FLAT[0][0]])
    docbin = DocBin(store_user_data=True, docs=[eg.reference for eg in examples])
    docs = list(DocBin().from_bytes(docbin.to_bytes()).get_docs(nlp.vocab))
    flags = [doc.user_data.get("knowfree_synthetic", False) for doc in docs]
    assert flags == [True, False]


def test_docs_without_extension_group_do_not_train_extension_columns():
    nlp = make_nlp()
    examples = make_examples(nlp, FLAT[:3], extension=EXTENSION)
    nlp.initialize(lambda: examples)
    knowfree = nlp.get_pipe("knowfree")
    n_tgt = len(knowfree.labels)
    _, grads = _loss(nlp, examples)
    assert "knowfree_ext" not in examples[2].reference.spans
    assert not grads[2][..., n_tgt:].any()
    assert grads[0][..., n_tgt:].any()


def test_save_load_gives_identical_predictions(trained_flat, tmp_path):
    nlp, _, _ = trained_flat
    texts = [text for text, _ in FLAT] + ["张三和李四去北京大学"]
    expected = [(span_tuples(d), d.spans["sc"].attrs["scores"]) for d in nlp.pipe(texts)]
    nlp.to_disk(tmp_path / "pipeline")
    loaded = spacy.load(tmp_path / "pipeline")
    from_bytes = make_nlp().from_bytes(nlp.to_bytes())
    for other in (loaded, from_bytes):
        got = [(span_tuples(d), d.spans["sc"].attrs["scores"]) for d in other.pipe(texts)]
        for (spans_a, scores_a), (spans_b, scores_b) in zip(expected, got):
            assert spans_a == spans_b
            numpy.testing.assert_allclose(scores_a, scores_b, rtol=1e-5)
    assert loaded.get_pipe("knowfree").labels == nlp.get_pipe("knowfree").labels
    assert loaded.get_pipe("knowfree").extension_labels == nlp.get_pipe("knowfree").extension_labels


def test_empty_short_and_long_docs(trained_flat):
    nlp, _, _ = trained_flat
    knowfree = nlp.get_pipe("knowfree")
    width, n_labels = knowfree.max_span_width, len(knowfree.labels)
    empty = nlp("")
    assert len(empty.spans["sc"]) == 0
    # Docs shorter than the band (one and two tokens) are scored alone exactly
    # as in a batch with longer docs: rows never see another doc's tokens.
    texts = ["张", "张三", FLAT[1][0], FLAT[0][0]]
    batched = knowfree.predict([nlp.make_doc(text) for text in texts])
    for text, logits in zip(texts, batched):
        alone = knowfree.predict([nlp.make_doc(text)])[0]
        assert alone.shape == logits.shape == (len(text), width, n_labels)
        numpy.testing.assert_allclose(alone, logits, atol=1e-5)
    unit = "张三在北京工作。李四去了上海。"
    long_text = unit * 400  # 6,000 characters: many chunks of the span grid
    doc = nlp(long_text)
    assert len(doc) == len(long_text)
    found = span_tuples(doc)
    assert found and all(0 <= s < e <= len(long_text) and e - s <= width for s, e, _ in found)
    # Every repetition but the first and last has the same context, so the
    # same spans, shifted: window and row-group borders leave no trace.
    size = len(unit)
    by_repetition = [
        [(s - r * size, e - r * size, label) for s, e, label in found if r * size <= s < (r + 1) * size]
        for r in range(400)
    ]
    assert all(spans == by_repetition[1] for spans in by_repetition[1:-1])
    # and the same logits
    logits = knowfree.predict([nlp.make_doc(long_text)])[0]
    reference = logits[size : 2 * size]
    for r in (57, 128, 256, 395):  # the last repetitions have cells past the end
        numpy.testing.assert_allclose(logits[r * size : (r + 1) * size], reference, atol=1e-4)


def test_unseen_label_raises_a_clear_error():
    nlp = make_nlp()
    nlp.initialize(lambda: make_examples(nlp, FLAT))
    unseen = make_examples(nlp, [("张三在纽约", [(0, 2, "PER"), (3, 5, "CITY")])])
    with pytest.raises(ValueError, match=r"KF001.*'CITY'.*initialize"):
        nlp.update(unseen, losses={})


def test_labels_from_initialize_settings_and_add_label_after_init():
    nlp = make_nlp()
    examples = make_examples(nlp, FLAT)
    nlp.initialize(
        lambda: examples,
    )
    knowfree = nlp.get_pipe("knowfree")
    assert set(knowfree.labels) == {"PER", "LOC", "ORG"}
    with pytest.raises(ValueError, match="KF003"):
        knowfree.add_label("NEW")
    config = nlp.config.copy()
    config["initialize"]["components"] = {
        "knowfree": {"labels": ["PER", "LOC", "ORG", "TIME"], "extension_labels": ["SEG:WORD"]}
    }
    nlp2 = spacy.util.load_model_from_config(config, auto_fill=True)
    nlp2.initialize(lambda: examples)
    assert nlp2.get_pipe("knowfree").labels == ("PER", "LOC", "ORG", "TIME")
    assert nlp2.get_pipe("knowfree").extension_labels == ("SEG:WORD",)


def test_no_labels_raises():
    nlp = make_nlp()
    examples = make_examples(nlp, [("今天天气很好", [])])
    with pytest.raises(ValueError, match="KF002"):
        nlp.initialize(lambda: examples)


def test_invalid_factory_arguments_raise():
    with pytest.raises(ValueError, match="KF004.*set_ents"):
        make_nlp(nested=True, set_ents=True)
    with pytest.raises(ValueError, match="KF004.*threshold"):
        make_nlp(threshold=1.5)


def test_spans_longer_than_max_span_width_are_reported_at_initialize():
    nlp = make_nlp(max_span_width=3)
    examples = make_examples(nlp, FLAT)
    with pytest.warns(UserWarning, match=r"KW001.*1 gold span.*max_span_width=3.*longest: 4"):
        nlp.initialize(lambda: examples)


def test_score_weights_follow_the_configured_key():
    nlp = make_nlp(spans_key="ner_spans")
    examples = make_examples(nlp, FLAT, spans_key="ner_spans")
    # the factory's default weights name "sc": initialize says what to set
    with pytest.warns(UserWarning, match=r"KW310.*spans_ner_spans_f"):
        nlp.initialize(lambda: examples)
    config = nlp.config.copy()
    config["training"]["score_weights"] = {
        "spans_ner_spans_f": 1.0,
        "spans_ner_spans_p": 0.0,
        "spans_ner_spans_r": 0.0,
        "spans_sc_f": None,
        "spans_sc_p": None,
        "spans_sc_r": None,
    }
    nlp = spacy.util.load_model_from_config(config, auto_fill=True)
    examples = make_examples(nlp, FLAT, spans_key="ner_spans")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        nlp.initialize(lambda: examples)
    assert not [w for w in caught if "KW310" in str(w.message)]
    weights = nlp.config["training"]["score_weights"]
    assert weights.get("spans_ner_spans_f") == 1.0
    assert weights.get("spans_sc_f") is None  # shown nowhere, weighted nothing
    scores = nlp.evaluate(examples)
    assert "spans_ner_spans_f" in scores and "spans_ner_spans_per_type" in scores


def test_set_ents_writes_doc_ents(trained_flat):
    nlp, _, _ = trained_flat
    nlp.get_pipe("knowfree").cfg["set_ents"] = True
    try:
        doc = nlp(FLAT[0][0])
    finally:
        nlp.get_pipe("knowfree").cfg["set_ents"] = False
    assert [(e.start_char, e.end_char, e.label_) for e in doc.ents] == span_tuples(doc)


def test_pipe_with_two_processes(trained_flat):
    nlp, _, _ = trained_flat
    texts = [text for text, _ in FLAT] * 3
    single = [span_tuples(doc) for doc in nlp.pipe(texts)]
    multi = [span_tuples(doc) for doc in nlp.pipe(texts, n_process=2, batch_size=2)]
    assert multi == single


def test_decoding_flat_and_nested_rules():
    # cells: [start, width-1, label]
    logits = numpy.full((6, 4, 2), -10.0, dtype="float32")
    logits[0, 3, 0] = 3.0  # 0..4  p=.95
    logits[0, 1, 1] = 2.0  # 0..2  nested inside 0..4
    logits[2, 3, 1] = 1.0  # 2..6  crosses 0..4
    logits[4, 1, 0] = 0.5  # 4..6  disjoint
    logits[5, 3, 0] = 9.0  # 5..9  past the end: invalid cell
    flat = [(d.start, d.end, d.label) for d in decode_grid(logits, 0.5, nested=False)]
    nested = [(d.start, d.end, d.label) for d in decode_grid(logits, 0.5, nested=True)]
    assert flat == [(0, 4, 0), (4, 6, 0)]
    assert nested == [(0, 4, 0), (0, 2, 1), (4, 6, 0)]
    assert decode_grid(logits, 0.99, nested=False) == []


def test_initialize_again_replaces_labels_and_accepts_label_data():
    nlp = make_nlp()
    nlp.initialize(lambda: make_examples(nlp, FLAT, extension=EXTENSION))
    knowfree = nlp.get_pipe("knowfree")
    label_data = knowfree.label_data
    assert label_data == {"labels": ["PER", "LOC", "ORG"], "extension_labels": ["ENT:人名", "ENT:地名", "POS:VERB"]}
    nested = make_examples(nlp, NESTED)
    nlp.initialize(lambda: nested)
    assert set(knowfree.labels) == {"ORG", "LOC", "PER"} and knowfree.extension_labels == ()
    nlp.update(nested, losses={})  # the output layer was resized
    knowfree.initialize(lambda: nested, labels=label_data)
    assert list(knowfree.labels) == label_data["labels"]
    assert list(knowfree.extension_labels) == label_data["extension_labels"]
    assert knowfree.model.get_ref("head").get_dim("nO") == 6


def test_mixing_docs_with_and_without_extension_spans_is_reported():
    nlp = make_nlp()
    examples = make_examples(nlp, FLAT, extension=EXTENSION)
    with pytest.warns(UserWarning, match=r"KW002.*3 document"):
        nlp.initialize(lambda: examples)


def test_long_docs_are_scored_in_windows_with_identical_logits(trained_flat, monkeypatch):
    import spacy_knowfree.component as component

    nlp, _, _ = trained_flat
    knowfree = nlp.get_pipe("knowfree")
    doc = nlp.make_doc("张三在北京工作。李四去了上海。赵六和钱七在深圳见面" * 30)
    n_tgt = len(knowfree.labels)
    whole = knowfree.model.predict([doc])[0][..., :n_tgt]  # the model gives every column
    monkeypatch.setattr(component, "LONG_DOC_ROWS", 100)  # 7 windows of 100 rows
    long_calls = []
    predict_long = component.KnowFREE._predict_long
    monkeypatch.setattr(
        component.KnowFREE,
        "_predict_long",
        lambda self, d, *args: long_calls.append(len(d)) or predict_long(self, d, *args),
    )
    short = nlp.make_doc("张三")
    windowed = knowfree.predict([doc, short])
    assert long_calls == [len(doc)] and len(windowed) == 2
    numpy.testing.assert_allclose(windowed[0], whole, atol=1e-5)
    # float32 sums in another batch: equal to the hot path's bound (issue 22: 1e-5), not bitwise
    numpy.testing.assert_allclose(windowed[1], knowfree.model.predict([short])[0][..., :n_tgt], atol=1e-5)


def test_unlabeled_docs_train_only_their_extension_columns():
    nlp = make_nlp()
    text = "张三在北京工作。"
    labelled = make_examples(nlp, [(text, [(0, 2, "PER"), (3, 5, "LOC")])], extension=EXTENSION)
    unlabeled = make_examples(nlp, [(text, [])], extension=EXTENSION)
    for eg in unlabeled:
        del eg.reference.spans["sc"]
        eg.reference.user_data["knowfree_unlabeled"] = True
    nlp.initialize(lambda: labelled)
    pipe = nlp.get_pipe("knowfree")
    n_tgt = len(pipe.labels)
    scores = pipe.predict_with_extensions([eg.predicted for eg in labelled])
    _, (d_labelled,) = pipe.get_loss(labelled, scores)
    _, (d_unlabeled,) = pipe.get_loss(unlabeled, scores)
    assert numpy.abs(d_labelled[..., :n_tgt]).sum() > 0
    assert numpy.abs(d_unlabeled[..., :n_tgt]).sum() == 0  # out of the loss, exactly
    # the extension columns train the same in both
    numpy.testing.assert_allclose(d_unlabeled[..., n_tgt:], d_labelled[..., n_tgt:])
    assert numpy.abs(d_unlabeled[..., n_tgt:]).sum() > 0
    # in a batch with unlabeled text the labelled doc's target gradient is the
    # same as in a batch of its own (averaged over labelled docs), and the
    # extension gradient is averaged over every doc
    _, (d_mixed_labelled, d_mixed_unlabeled) = pipe.get_loss(labelled + unlabeled, [*scores, *scores])
    numpy.testing.assert_allclose(d_mixed_labelled[..., :n_tgt], d_labelled[..., :n_tgt])
    numpy.testing.assert_allclose(d_mixed_labelled[..., n_tgt:], d_labelled[..., n_tgt:] / 2)
    assert numpy.abs(d_mixed_unlabeled[..., :n_tgt]).sum() == 0


def test_a_label_cannot_be_both_target_and_extension():
    nlp = make_nlp()
    examples = make_examples(nlp, FLAT, extension={FLAT[0][0]: [(0, 2, "PER")]})
    with pytest.raises(ValueError, match=r"KF005.*'PER'.*'knowfree'"):
        nlp.initialize(lambda: examples)
    knowfree = make_nlp().get_pipe("knowfree")
    knowfree.add_extension_label("ENT:人名")
    with pytest.raises(ValueError, match=r"KF005.*'ENT:人名'"):
        knowfree.add_label("ENT:人名")
    assert knowfree.labels == () and knowfree.extension_labels == ("ENT:人名",)


def test_weights_of_another_model_layout_raise_a_clear_error(trained_flat):
    import srsly

    from spacy_knowfree.layers.model import load_model_bytes

    nlp, _, _ = trained_flat
    model = nlp.get_pipe("knowfree").model
    data = model.to_bytes()
    msg = srsly.msgpack_loads(data)
    for key in ("nodes", "attrs", "params", "shims"):
        msg[key] = msg[key][:-1]  # one layer fewer, like the layout before resizable outputs
    with pytest.raises(ValueError, match="KF315.*'knowfree'"):
        load_model_bytes(model, srsly.msgpack_dumps(msg), "knowfree")
    assert load_model_bytes(model, data, "knowfree") is model


def test_optimizer_averages_reach_the_torch_span_head():
    """``use_averages = true``: inside ``nlp.use_params(optimizer.averages)``
    (spaCy's evaluation and model-best) the torch part of the head uses its
    averaged weights too, and gets its own back afterwards."""
    import torch
    from thinc.api import Adam, xp2torch

    from spacy_knowfree.layers.torch_state import StateDictShim

    nlp = make_nlp()
    examples = make_examples(nlp, FLAT)
    nlp.initialize(lambda: examples)
    optimizer = Adam(0.01, use_averages=True)
    for _ in range(3):
        nlp.update(examples, sgd=optimizer)
    knowfree = nlp.get_pipe("knowfree")
    shim = next(s for node in knowfree.model.walk() for s in node.shims if isinstance(s, StateDictShim))
    weights = dict(shim._model.named_parameters())
    name = next(n for n in weights if (shim.id, n) in optimizer.averages)
    averaged = xp2torch(optimizer.averages[(shim.id, name)])
    last = weights[name].detach().clone()
    assert not torch.allclose(last, averaged)
    docs = [nlp.make_doc(text) for text, _ in FLAT]
    plain = knowfree.predict(docs)
    with nlp.use_params(optimizer.averages):
        assert torch.allclose(dict(shim._model.named_parameters())[name].detach(), averaged)
        with_averages = knowfree.predict(docs)
    assert torch.equal(dict(shim._model.named_parameters())[name].detach(), last)
    assert not numpy.allclose(plain[0], with_averages[0])
    assert numpy.allclose(knowfree.predict(docs)[0], plain[0])
