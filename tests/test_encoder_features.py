"""Character n-gram embeddings (CharNgramEmbed.v1) and the token-evidence term of the head."""

import copy

import numpy
import pytest
import spacy
from spacy.util import registry
from thinc.api import fix_random_seed

from spacy_knowfree.layers.char_ngram_embed import _AFTER, _BEFORE, _mix, char_ngram_features

from _examples import FLAT, NESTED, SMALL_MODEL, char_ngram_model, make_examples, make_nlp, span_tuples, train


def ngram_model():
    return char_ngram_model(ngram_rows=3000, trigrams=True)


def test_bigram_and_trigram_keys_are_exact():
    nlp = spacy.blank("zh")
    doc = nlp.make_doc("北京大学")
    assert [t.text for t in doc] == ["北", "京", "大", "学"]
    o = numpy.asarray([t.orth for t in doc], dtype="uint64")
    keys = char_ngram_features(["ORTH"], trigrams=True).predict([doc])[0]
    assert keys.dtype == numpy.uint64 and keys.shape == (4, 4)
    assert list(keys[:, 0]) == list(o)  # the attrs columns come first
    u = numpy.uint64
    expected_left = [_mix(_BEFORE, o[0]), _mix(o[0], o[1]), _mix(o[1], o[2]), _mix(o[2], o[3])]
    expected_right = [_mix(o[0], o[1]), _mix(o[1], o[2]), _mix(o[2], o[3]), _mix(o[3], _AFTER)]
    assert [u(k) for k in keys[:, 1]] == expected_left
    assert [u(k) for k in keys[:, 2]] == expected_right
    assert u(keys[1, 3]) == _mix(_mix(o[0], o[1]), o[2])
    # the right bigram of one character is the left bigram of the next
    assert list(keys[:-1, 2]) == list(keys[1:, 1])
    # order matters: 京北 is not 北京
    assert _mix(o[1], o[0]) != _mix(o[0], o[1])


def test_tokens_longer_than_one_character_fall_back_to_attrs():
    nlp = spacy.blank("en")
    doc = nlp.make_doc("a big house")
    keys = char_ngram_features(["ORTH", "SHAPE"], trigrams=False).predict([doc])[0]
    assert keys.shape == (3, 4)
    assert keys[0, 2] != 0 and keys[0, 3] != 0  # "a" is one character
    assert not keys[1:, 2:].any()  # "big", "house": no n-gram features
    assert list(keys[:, 0]) == [t.orth for t in doc]


def test_char_ngram_embed_is_registered_and_validates():
    make = registry.architectures.get("spacy-knowfree.CharNgramEmbed.v1")
    model = make(width=16, attrs=["ORTH"], rows=[100], ngram_rows=50)
    doc = spacy.blank("zh").make_doc("你好世界")
    model.initialize(X=[doc])
    assert model.predict([doc])[0].shape == (4, 16)
    with pytest.raises(ValueError, match="KF007"):
        make(width=16, attrs=["ORTH", "SHAPE"], rows=[100], ngram_rows=50)


def test_char_ngram_embed_trains_and_round_trips(tmp_path):
    nlp = make_nlp(model=ngram_model())
    examples = make_examples(nlp, FLAT)
    assert train(nlp, examples) == 1.0
    nlp.to_disk(tmp_path / "p")
    loaded = spacy.load(tmp_path / "p")
    texts = [text for text, _ in FLAT] + ["王五在上海工作"]
    for a, b in zip(nlp.pipe(texts), loaded.pipe(texts)):
        assert span_tuples(a) == span_tuples(b)
        numpy.testing.assert_array_equal(a.spans["sc"].attrs["scores"], b.spans["sc"].attrs["scores"])


def evidence_model():
    model = copy.deepcopy(SMALL_MODEL)
    model["token_evidence"] = True
    model["dropout"] = 0.0
    return model


def test_token_evidence_starts_as_the_plain_model():
    fix_random_seed(0)
    plain = make_nlp(model={**SMALL_MODEL, "dropout": 0.0})
    fix_random_seed(0)
    with_evidence = make_nlp(model=evidence_model())
    for nlp in (plain, with_evidence):
        fix_random_seed(0)
        nlp.initialize(lambda nlp=nlp: make_examples(nlp, NESTED))
    docs = [plain.make_doc(text) for text, _ in NESTED]
    for a, b in zip(plain.get_pipe("knowfree").predict(docs), with_evidence.get_pipe("knowfree").predict(docs)):
        numpy.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_token_evidence_gradient_matches_finite_differences():
    nlp = make_nlp(model=evidence_model(), nested=True)
    examples = make_examples(nlp, NESTED)
    nlp.initialize(lambda: examples)
    head = nlp.get_pipe("knowfree").model.get_ref("head")
    evidence = head.get_ref("evidence_layer")
    rng = numpy.random.RandomState(0)
    evidence.set_param("W", rng.normal(0, 0.3, evidence.get_param("W").shape).astype("float32"))
    X = [rng.normal(0, 1, (len(eg.predicted), 64)).astype("float32") for eg in examples]
    Y, backprop = head(X, is_train=True)
    dY = [rng.normal(0, 1, y.shape).astype("float32") for y in Y]
    dX = backprop(dY)

    def objective(inputs):
        outputs, _ = head(inputs, is_train=True)
        return sum(float((y.astype("float64") * d).sum()) for y, d in zip(outputs, dY))

    eps = 1e-2
    for doc_i, token, dim in [(0, 0, 0), (1, 4, 3), (1, 10, 7), (2, 8, 1)]:
        plus = [x.copy() for x in X]
        minus = [x.copy() for x in X]
        plus[doc_i][token, dim] += eps
        minus[doc_i][token, dim] -= eps
        numeric = (objective(plus) - objective(minus)) / (2 * eps)
        assert dX[doc_i][token, dim] == pytest.approx(numeric, rel=0.05, abs=0.05)


def test_token_evidence_sums_inside_scores_over_the_span():
    nlp = make_nlp(model=evidence_model())
    examples = make_examples(nlp, FLAT)
    nlp.initialize(lambda: examples)
    head = nlp.get_pipe("knowfree").model.get_ref("head")
    X = [numpy.random.RandomState(1).normal(0, 1, (7, 64)).astype("float32")]
    before, _ = head(X, is_train=False)
    evidence = head.get_ref("evidence_layer")
    n_out = head.get_dim("nO")
    b = numpy.zeros((3 * n_out,), dtype="float32")
    b[n_out] = 1.0  # inside score 1 for label 0 on every token
    b[0] = 0.5  # begin score 0.5 for label 0
    evidence.set_param("b", b)
    after, _ = head(X, is_train=False)
    added = after[0][..., 0] - before[0][..., 0]
    widths = numpy.arange(head.get_dim("nW")) + 1
    valid = numpy.arange(7)[:, None] + widths[None, :] <= 7
    numpy.testing.assert_allclose(added[valid], (0.5 + widths[None, :] + 0 * added)[valid], rtol=1e-5)


def test_token_evidence_trains_nested_spans_and_round_trips(tmp_path):
    nlp = make_nlp(model={**evidence_model(), "dropout": 0.1}, nested=True)
    examples = make_examples(nlp, NESTED)
    assert train(nlp, examples) == 1.0
    nlp.to_disk(tmp_path / "p")
    loaded = spacy.load(tmp_path / "p")
    for (_, spans), doc in zip(NESTED, loaded.pipe(text for text, _ in NESTED)):
        assert sorted(span_tuples(doc)) == sorted(spans)


def test_ngram_feature_keys_follow_the_crf_templates():
    from spacy_knowfree.layers.ngram_evidence import ngram_feature_keys

    doc = spacy.blank("zh").make_doc("北京大学")
    o = numpy.asarray([t.orth for t in doc], dtype="uint64")
    keys = ngram_feature_keys(o)
    assert keys.shape == (4, 10) and keys.dtype == numpy.uint64
    # the same character under two templates gives two keys (U+0 of 京, U-1 of 大)
    assert keys[1, 2] != keys[2, 1]
    # a template's key depends only on the characters it names: U+0 of 北 in another doc
    other = spacy.blank("zh").make_doc("北方")
    assert ngram_feature_keys(numpy.asarray([t.orth for t in other], "uint64"))[0, 2] == keys[0, 2]
    # the right-edge padding differs from the left-edge padding
    assert keys[0, 0] != keys[3, 4]


def ngram_evidence_model():
    model = copy.deepcopy(SMALL_MODEL)
    model["ngram_evidence"] = True
    model["ngram_buckets"] = 4096
    model["dropout"] = 0.0
    return model


def test_ngram_evidence_starts_at_zero_and_learns_its_table(tmp_path):
    nlp = make_nlp(model=ngram_evidence_model(), nested=True)
    examples = make_examples(nlp, NESTED)
    nlp.initialize(lambda: examples)
    model = nlp.get_pipe("knowfree").model
    wide = model.get_ref("ngram_evidence")
    n_labels = len(nlp.get_pipe("knowfree").labels)
    assert wide.get_param("E").shape == (4096, 3 * n_labels)
    assert not wide.get_param("E").any()
    assert train(nlp, examples) == 1.0
    assert wide.get_param("E").any()
    nlp.to_disk(tmp_path / "p")
    loaded = spacy.load(tmp_path / "p")
    numpy.testing.assert_array_equal(
        loaded.get_pipe("knowfree").model.get_ref("ngram_evidence").get_param("E"), wide.get_param("E")
    )
    for a, b in zip(nlp.pipe(t for t, _ in NESTED), loaded.pipe(t for t, _ in NESTED)):
        assert span_tuples(a) == span_tuples(b)
        numpy.testing.assert_array_equal(a.spans["sc"].attrs["scores"], b.spans["sc"].attrs["scores"])


def test_ngram_evidence_gradient_reaches_the_table_rows_of_the_doc():
    nlp = make_nlp(model=ngram_evidence_model())
    examples = make_examples(nlp, FLAT)
    nlp.initialize(lambda: examples)
    model = nlp.get_pipe("knowfree").model
    wide = model.get_ref("ngram_evidence")
    docs = [eg.predicted for eg in examples[:2]]  # 15 tokens: fewer than the band width (32)
    logits, backprop = model(docs, is_train=True)
    d_logits = [numpy.ones_like(y) for y in logits]
    backprop(d_logits)
    grad = wide.get_grad("E")
    # every row touched belongs to a feature of these docs, and there are some
    from spacy_knowfree.layers.ngram_evidence import _rows

    touched = set(numpy.concatenate([r.reshape(-1) for r in _rows(wide, docs)]).tolist())
    nonzero = set(numpy.nonzero(numpy.abs(grad).sum(axis=1))[0].tolist())
    assert nonzero and nonzero <= touched


def test_ngram_evidence_is_updated_with_a_scaled_head_rate():
    nlp = make_nlp(model=ngram_evidence_model(), head_lr_scale=5.0)
    examples = make_examples(nlp, FLAT)
    optimizer = nlp.initialize(lambda: examples)
    wide = nlp.get_pipe("knowfree").model.get_ref("ngram_evidence")
    nlp.update(examples, sgd=optimizer, drop=0.0)
    assert wide.get_param("E").any()
