"""The knowfree_crf component (a CRF whose tags feed CharNgramEmbed) and its
tags as an input feature."""

import copy
import hashlib

import numpy
import pytest
import spacy
from spacy.tokens import Doc
from spacy.util import fix_random_seed

pytest.importorskip("pycrfsuite")

from spacy_knowfree.constants import CRF_TAGS_KEY  # noqa: E402
from spacy_knowfree.layers.char_ngram_embed import char_ngram_features  # noqa: E402
from spacy_knowfree.layers.crf_tags import NO_TAGS, crf_tag_keys  # noqa: E402

from _examples import FLAT, NESTED, char_ngram_model, make_examples  # noqa: E402

# eight docs that teach LOC; one holds the only BASE span
LOC = [
    (f"我们在{city}见面", [(3, 5, "LOC")]) for city in ("北京", "上海", "深圳", "南京", "杭州", "成都", "武汉", "西安")
]
BASE = ("火星基地很远", [(0, 4, "BASE")])


def _peer_nlp(**config):
    nlp = spacy.blank("zh")
    nlp.add_pipe("knowfree_crf", config={"c1": 0.0, **config})
    return nlp


def test_the_crf_tags_every_token_and_training_docs_get_held_out_tags():
    nlp = _peer_nlp()
    examples = make_examples(nlp, [*LOC, BASE])
    nlp.initialize(lambda: examples)
    tags = nlp("我们在北京见面").user_data[CRF_TAGS_KEY]
    assert tags == ["O", "O", "O", "B-LOC", "E-LOC", "O", "O"]
    # the training doc with the only BASE span is tagged by a CRF that never saw BASE
    held_out = nlp(BASE[0]).user_data[CRF_TAGS_KEY]
    assert len(held_out) == len(BASE[0]) and not any(tag.endswith("-BASE") for tag in held_out)
    # the CRF trained on all the docs knows it: a loaded pipeline uses only that one
    peer = nlp.get_pipe("knowfree_crf")
    assert peer._tagger.tag(nlp.make_doc(BASE[0])) == ["B-BASE", "I-BASE", "I-BASE", "E-BASE", "O", "O"]


def test_unlabeled_docs_do_not_teach_the_crf_that_nothing_is_there():
    nlp = _peer_nlp(folds=0)
    unlabeled = make_examples(nlp, [(text, []) for text, _ in LOC] * 3)
    for eg in unlabeled:
        eg.reference.user_data["knowfree_unlabeled"] = True
    nlp.initialize(lambda: make_examples(nlp, LOC) + unlabeled)
    assert nlp("我们在北京见面").user_data[CRF_TAGS_KEY][3:5] == ["B-LOC", "E-LOC"]
    with pytest.raises(ValueError, match="KF022"):
        nlp.initialize(lambda: unlabeled)


def test_spans_key_null_learns_the_entities_of_a_ner_pipeline():
    nlp = _peer_nlp(spans_key=None, folds=0)
    examples = make_examples(nlp, LOC, spans_key="unused")
    for eg in examples:
        eg.reference.ents = list(eg.reference.spans.pop("unused"))
    nlp.initialize(lambda: examples)
    assert nlp("我们在北京见面").user_data[CRF_TAGS_KEY] == ["O", "O", "O", "B-LOC", "E-LOC", "O", "O"]
    # docs with spans but no entities teach it nothing
    with pytest.raises(ValueError, match=r"KF022.*doc\.ents"):
        nlp.initialize(lambda: make_examples(nlp, LOC))


def test_without_folds_training_docs_get_the_full_crfs_tags():
    nlp = _peer_nlp(folds=0)
    nlp.initialize(lambda: make_examples(nlp, [*LOC, BASE]))
    assert nlp(BASE[0]).user_data[CRF_TAGS_KEY][:4] == ["B-BASE", "I-BASE", "I-BASE", "E-BASE"]


def test_round_trips_keep_the_crf_and_drop_the_held_out_tags(tmp_path):
    nlp = _peer_nlp()
    nlp.initialize(lambda: make_examples(nlp, [*LOC, BASE]))
    full = nlp.get_pipe("knowfree_crf")._tagger.tag(nlp.make_doc(BASE[0]))
    nlp.to_disk(tmp_path)
    loaded = spacy.load(tmp_path)
    assert loaded.get_pipe("knowfree_crf").cfg == nlp.get_pipe("knowfree_crf").cfg
    assert loaded(BASE[0]).user_data[CRF_TAGS_KEY] == full
    from_bytes = _peer_nlp().from_bytes(nlp.to_bytes())
    assert from_bytes(BASE[0]).user_data[CRF_TAGS_KEY] == full
    texts = ["我们在杭州见面", "火星基地很远", "今天很好"]
    assert [d.user_data[CRF_TAGS_KEY] for d in loaded.pipe(texts, n_process=2)] == [
        loaded(t).user_data[CRF_TAGS_KEY] for t in texts
    ]
    assert (
        copy.deepcopy(loaded.get_pipe("knowfree_crf"))(loaded.make_doc(texts[0])).user_data[CRF_TAGS_KEY][3] == "B-LOC"
    )


def test_nested_spans_are_flattened_with_a_warning():
    nlp = _peer_nlp()
    data = [*LOC, ("北京大学在北京", [(0, 4, "ORG"), (0, 2, "LOC"), (5, 7, "LOC")])]
    with pytest.warns(UserWarning, match="KW003"):
        nlp.initialize(lambda: make_examples(nlp, data))


def test_bad_input_gets_kf_errors():
    with pytest.raises(ValueError, match="KF021.*folds"):
        _peer_nlp(folds=1)
    with pytest.raises(ValueError, match="KF021.*c2"):
        _peer_nlp(c2=-1.0)
    nlp = _peer_nlp()
    with pytest.raises(ValueError, match="KF023"):
        nlp("我们在北京见面")
    with pytest.raises(ValueError, match=r"KF022.*spans\['sc'\]"):
        nlp.initialize(lambda: make_examples(nlp, [("今天很好", [])]))


def test_tag_keys_are_the_hashes_of_the_tags():
    vocab = spacy.blank("zh").vocab
    doc = Doc(vocab, words=list("在北京"))
    assert crf_tag_keys(doc).tolist() == [NO_TAGS] * 3
    doc.user_data[CRF_TAGS_KEY] = ["O", "B-LOC", "E-LOC"]
    expected = [
        int.from_bytes(hashlib.blake2b(t.encode(), digest_size=8).digest(), "little") for t in ("O", "B-LOC", "E-LOC")
    ]
    assert crf_tag_keys(doc).tolist() == expected and len(set(expected)) == 3
    features = char_ngram_features(["ORTH"], trigrams=False, crf_tags=True)
    keys, _ = features([doc], is_train=False)
    numpy.testing.assert_array_equal(keys[0][:, -1], crf_tag_keys(doc))


def _crf_tags_model():
    return char_ngram_model(ngram_rows=1000, crf_tags=True, crf_tag_rows=32)


def test_knowfree_learns_from_the_crf_tags_and_round_trips(tmp_path):
    nlp = spacy.blank("zh")
    nlp.add_pipe("knowfree_crf")
    nlp.add_pipe("knowfree", config={"model": _crf_tags_model()})
    examples = make_examples(nlp, FLAT * 2)
    optimizer = nlp.initialize(lambda: examples)
    tables = [node for node in nlp.get_pipe("knowfree").model.walk() if node.name.startswith("hashembed")]
    assert tables[-1].get_dim("nV") == 32  # the CRF-tag table is the last
    before = tables[-1].get_param("E").copy()
    for _ in range(3):
        nlp.update(examples, sgd=optimizer, annotates=["knowfree_crf"])
    assert not numpy.array_equal(tables[-1].get_param("E"), before)
    doc = nlp("王五在上海工作")
    nlp.to_disk(tmp_path)
    loaded = spacy.load(tmp_path)
    assert loaded.pipe_names == ["knowfree_crf", "knowfree"]
    numpy.testing.assert_array_equal(
        loaded.get_pipe("knowfree").predict([loaded("王五在上海工作")])[0], nlp.get_pipe("knowfree").predict([doc])[0]
    )


def test_knowfree_refuses_docs_without_crf_tags():
    nlp = spacy.blank("zh")
    nlp.add_pipe("knowfree_crf")
    nlp.add_pipe("knowfree", config={"model": _crf_tags_model()})
    examples = make_examples(nlp, FLAT)
    optimizer = nlp.initialize(lambda: examples)
    with pytest.raises(ValueError, match="KF024.*annotating_components"):
        nlp.update(examples, sgd=optimizer)  # the CRF does not annotate the batch
    knowfree = nlp.get_pipe("knowfree")
    with pytest.raises(ValueError, match="KF024"):
        knowfree(nlp.make_doc("王五在上海工作"))
    doc = nlp("王五在上海工作")  # through the whole pipeline it works
    assert len(doc.user_data[CRF_TAGS_KEY]) == len(doc) and "sc" in doc.spans


def test_nested_spans_and_extension_labels_still_train_with_crf_tags():
    nlp = spacy.blank("zh")
    with pytest.warns(UserWarning, match="KW003"):  # the CRF keeps the outermost spans
        nlp.add_pipe("knowfree_crf")
        nlp.add_pipe("knowfree", config={"model": _crf_tags_model(), "nested": True})
        examples = make_examples(nlp, NESTED, extension={"北京大学在北京": [(0, 2, "ENT:地名")]})
        optimizer = nlp.initialize(lambda: examples)
    assert nlp.get_pipe("knowfree").extension_labels == ("ENT:地名",)
    fix_random_seed(0)
    optimizer.learn_rate = 0.003
    for _ in range(40):
        nlp.update(examples, sgd=optimizer, drop=0.0, annotates=["knowfree_crf"])
    doc = nlp("北京大学在北京")
    predicted = {(s.start_char, s.end_char, s.label_) for s in doc.spans["sc"]}
    assert {(0, 4, "ORG"), (0, 2, "LOC"), (5, 7, "LOC")} <= predicted  # ORG and the LOC inside it


def test_a_damaged_crf_model_gets_a_kf_error(tmp_path):
    nlp = _peer_nlp()
    nlp.initialize(lambda: make_examples(nlp, LOC))
    nlp.to_disk(tmp_path)
    (tmp_path / "knowfree_crf" / "model.crfsuite").write_bytes(b"not a CRFsuite model")
    loaded = spacy.load(tmp_path)
    with pytest.raises(ValueError, match="KF025"):
        loaded("我们在北京见面")
