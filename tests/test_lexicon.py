"""Tests for the offline jieba lexicon component ``knowfree_lexicon``."""

import pickle
import subprocess
import sys

import pytest
import spacy
from spacy.tokens import Doc, Span

pytest.importorskip("jieba")

from spacy_knowfree.constants import EXTENSION_SPANS_KEY  # noqa: E402
from spacy_knowfree.knowledge import lexicon as lexicon_module  # noqa: E402
from spacy_knowfree.knowledge.lexicon import (  # noqa: E402
    DEFAULT_ENTITY_TYPES,
    ENTITY_TYPES_EN,
    KnowFreeLexicon,
)
from spacy_knowfree.pos_tags import (  # noqa: E402
    JIEBA_TO_UPOS,
    UPOS_TAGS,
    jieba_tag_to_upos,
    normalize_pos_tag,
)

KEY = "knowfree_ext"
TEXTS = [
    "张三在北京工作。",
    "习近平主席昨天在上海会见了李明博。",
    "马云创办了阿里巴巴集团，总部位于杭州。",
    "我们1998年3月去过长城，觉得非常壮观！",
    "这个手机壳¥39.9包邮~真的很划算啊",
]


def char_doc(vocab, text):
    """One token per character, no whitespace (the KnowFREE data format)."""
    return Doc(vocab, words=list(text), spaces=[False] * len(text))


@pytest.fixture(scope="module")
def nlp():
    nlp = spacy.blank("zh")  # character segmentation
    nlp.add_pipe("knowfree_lexicon")
    return nlp


@pytest.fixture(scope="module")
def lex(nlp):
    return nlp.get_pipe("knowfree_lexicon")


def span_keys(doc):
    return [(s.start, s.end, s.label_) for s in doc.spans[KEY]]


def by_label(doc, prefix):
    return [s for s in doc.spans[KEY] if s.label_.startswith(prefix)]


def test_pos_table_is_complete_and_valid():
    jieba_pos = pytest.importorskip("jieba.posseg.prob_start")
    hmm_tags = {t for (_, t) in jieba_pos.P}
    regex_tags = {"eng", "m", "x"}
    missing = (hmm_tags | regex_tags) - set(JIEBA_TO_UPOS)
    assert not missing, f"jieba tags without a UPOS mapping: {missing}"
    assert set(JIEBA_TO_UPOS.values()) <= set(UPOS_TAGS)
    # word-level refinements
    assert jieba_tag_to_upos("，", "x") == "PUNCT"
    assert jieba_tag_to_upos("😀", "x") == "SYM"
    assert jieba_tag_to_upos("¥", "x") == "SYM"
    assert jieba_tag_to_upos("年", "m") == "NOUN"
    assert jieba_tag_to_upos("1998", "m") == "NUM"
    assert jieba_tag_to_upos("三", "m") == "NUM"
    assert jieba_tag_to_upos("乩", "x") == "X"


def test_char_tokenized_docs_fully_covered(nlp, lex):
    for text in TEXTS:
        doc = lex(char_doc(nlp.vocab, text))
        seg = sorted((s.start, s.end) for s in by_label(doc, "SEG:"))
        pos = sorted((s.start, s.end) for s in by_label(doc, "POS:"))
        # SEG spans tile the doc exactly: no gap, no overlap
        assert seg[0][0] == 0 and seg[-1][1] == len(doc)
        assert all(a[1] == b[0] for a, b in zip(seg, seg[1:])), text
        # one POS span per word, on the same boundaries
        assert pos == seg
        assert {s.label_ for s in by_label(doc, "SEG:")} == {"SEG:WORD"}
        assert {s.label_[4:] for s in by_label(doc, "POS:")} <= set(UPOS_TAGS)
        # every emitted label is announced by the component
        assert {s.label_ for s in doc.spans[KEY]} <= set(lex.labels)
        # same words as analyze()
        words = [(w.start, w.end) for w in lex.analyze(text)]
        assert [(doc[a].idx, doc[b - 1].idx + 1) for a, b in seg] == words


def test_offsets_with_emoji_fullwidth_and_spaces(nlp, lex):
    text = "我爱😀北京 天安门！ＡＢＣ１２３，好的ok 2024年\n第二行\t 👍🏻 end"
    words = lex.analyze(text)
    # non-overlapping, increasing, never whitespace, never cut inside a char
    last = 0
    for w in words:
        piece = text[w.start : w.end]
        assert w.start >= last and piece and piece == piece.strip()
        last = w.end
    assert "".join(text[w.start : w.end] for w in words) == "".join(text.split())
    # full-width ASCII keeps its original characters but is one word
    pieces = {text[w.start : w.end]: w for w in words}
    assert "ＡＢＣ１２３" in pieces
    assert pieces["😀"].upos == "SYM"
    assert pieces["！"].upos == "PUNCT"

    # character tokens, spaces as their own tokens
    doc = lex(char_doc(nlp.vocab, text))
    for span in doc.spans[KEY]:
        assert span.text.strip() == span.text != ""
    seg = {(s.start_char, s.end_char) for s in by_label(doc, "SEG:")}
    assert seg == {(w.start, w.end) for w in words}
    non_space = {t.i for t in doc if not t.is_space}
    covered = {i for s in by_label(doc, "POS:") for i in range(s.start, s.end)}
    assert covered == non_space

    # whitespace-tokenized doc (trailing spaces): spans snap to whole tokens
    ws_text = "我爱北京 天安门 😀 ＡＢＣ１２３"
    doc = lex(spacy.blank("xx").make_doc(ws_text))
    for span in doc.spans[KEY]:
        assert span.text == ws_text[span.start_char : span.end_char]
        assert not span.text.isspace()
    assert len({(s.start, s.end, s.label_) for s in doc.spans[KEY]}) == len(doc.spans[KEY])


def test_coarse_tokens_expand_without_duplicates(nlp, lex):
    doc = Doc(nlp.vocab, words=["张三在", "北京工作", "。"], spaces=[False] * 3)
    lex(doc)
    keys = [(s.start, s.end, s.label_) for s in doc.spans[KEY]]
    assert len(keys) == len(set(keys))
    for s in doc.spans[KEY]:
        assert 0 <= s.start < s.end <= len(doc)


def test_entity_family_person_and_place(nlp, lex):
    doc = lex(char_doc(nlp.vocab, "张三在北京工作。"))
    ents = {(s.text, s.label_) for s in by_label(doc, "ENT:")}
    assert ("张三", "ENT:" + DEFAULT_ENTITY_TYPES["nr"]) in ents
    assert ("北京", "ENT:" + DEFAULT_ENTITY_TYPES["ns"]) in ents
    pos = {(s.text, s.label_) for s in by_label(doc, "POS:")}
    assert ("张三", "POS:PROPN") in pos and ("北京", "POS:PROPN") in pos
    # an ENT span always sits on a SEG word
    seg = {(s.start, s.end) for s in by_label(doc, "SEG:")}
    assert all((s.start, s.end) in seg for s in by_label(doc, "ENT:"))


def test_configurable_types_families_and_key():
    nlp = spacy.blank("zh")
    nlp.add_pipe(
        "knowfree_lexicon",
        config={"entity_types": ENTITY_TYPES_EN, "families": ["ENT"], "spans_key": "ext"},
    )
    doc = nlp("张三在北京工作。")
    assert KEY not in doc.spans
    labels = {(s.text, s.label_) for s in doc.spans["ext"]}
    assert ("张三", "ENT:PERSON") in labels and ("北京", "ENT:PLACE") in labels
    assert all(s.label_.startswith("ENT:") for s in doc.spans["ext"])
    with pytest.raises(ValueError, match="KF250"):
        spacy.blank("zh").add_pipe("knowfree_lexicon", config={"families": ["SEG", "NER"]})
    with pytest.raises(ValueError, match="KF253"):
        spacy.blank("zh").add_pipe("knowfree_lexicon", config={"pos_overrides": {"f": "LOC"}})
    nlp2 = spacy.blank("zh")
    nlp2.add_pipe("knowfree_lexicon", config={"pos_overrides": {"f": "NOUN"}})
    doc = nlp2("桌子上")
    assert ("上", "POS:NOUN") in {(s.text, s.label_) for s in doc.spans[KEY]}


def test_appends_to_existing_group_and_is_idempotent(nlp, lex):
    doc = char_doc(nlp.vocab, "张三在北京工作。")
    doc.spans[KEY] = [Span(doc, 0, 3, label="ENT:自定义")]
    lex(doc)
    n = len(doc.spans[KEY])
    assert doc.spans[KEY][0].label_ == "ENT:自定义"
    lex(doc)
    assert len(doc.spans[KEY]) == n  # no identical duplicates


def test_empty_and_whitespace_docs(nlp, lex):
    for text in ["", "   ", "\n"]:
        doc = lex(nlp.make_doc(text))
        assert KEY in doc.spans and len(doc.spans[KEY]) == 0


def test_user_dict_lazy_quiet_and_private(tmp_path, capfd):
    words = tmp_path / "words.utf8"
    # CRLF, BOM, a tagged and an untagged new word, a full-width word
    words.write_bytes("\ufeff蓝鲸浩瀚科技 nt\r\n云栖竹径公园\r\n１９９８年\r\n".encode("utf8"))
    nlp = spacy.blank("zh")
    lex = nlp.add_pipe("knowfree_lexicon", config={"user_dict": str(words)})
    assert not lex.is_initialized  # lazy
    capfd.readouterr()
    doc = nlp("蓝鲸浩瀚科技在云栖竹径公园开会")
    err = capfd.readouterr().err
    assert "prefix dict" not in err and "Loading model" not in err  # quiet
    labels = {(s.text, s.label_) for s in doc.spans[KEY]}
    assert ("蓝鲸浩瀚科技", "SEG:WORD") in labels
    assert ("蓝鲸浩瀚科技", "ENT:组织机构") in labels
    assert ("云栖竹径公园", "SEG:WORD") in labels
    # the untagged word gets the POS of its longest known suffix, not X
    assert any(t == "云栖竹径公园" and lab.startswith("POS:") and lab != "POS:X" for t, lab in labels)
    # the user dictionary does not leak into a component without it
    other = KnowFreeLexicon(nlp.vocab)
    assert (0, 6) not in {(w.start, w.end) for w in other.analyze("蓝鲸浩瀚科技在开会")}
    # missing file: a clear error on first use
    bad = KnowFreeLexicon(nlp.vocab, user_dict=str(tmp_path / "nope.txt"))
    with pytest.raises(IOError, match="KF251"):
        bad(nlp.make_doc("测试"))


def test_missing_jieba_is_a_clear_error(tmp_path, monkeypatch):
    words = tmp_path / "w.txt"
    words.write_text("新词甲乙\n", encoding="utf8")  # a fresh segmenter, not the shared one
    lex = KnowFreeLexicon(spacy.blank("zh").vocab, user_dict=str(words))
    monkeypatch.setitem(sys.modules, "jieba", None)
    with pytest.raises(ImportError, match="KF254"):
        lex.initialize()


def test_config_round_trip(tmp_path):
    nlp = spacy.blank("zh")
    nlp.add_pipe(
        "knowfree_lexicon",
        config={"families": ["SEG", "ENT"], "entity_types": {"nr": "人物", "ns": "地点"}, "hmm": False},
    )
    nlp.initialize()
    assert nlp.get_pipe("knowfree_lexicon").is_initialized
    nlp.to_disk(tmp_path / "pipe")
    nlp2 = spacy.load(tmp_path / "pipe")
    cfg1 = nlp.config["components"]["knowfree_lexicon"]
    cfg2 = nlp2.config["components"]["knowfree_lexicon"]
    assert cfg1 == cfg2
    lex2 = nlp2.get_pipe("knowfree_lexicon")
    assert lex2.families == ("SEG", "ENT") and lex2.entity_types == {"nr": "人物", "ns": "地点"}
    assert lex2.hmm is False
    text = "李白在北京写诗。"  # dictionary words: same result without the HMM
    spans1 = span_keys(nlp(text))
    assert spans1 == span_keys(nlp2(text)) and ("ENT:人物" in {lab for _, _, lab in spans1})
    assert "ENT:人名" not in {lab for _, _, lab in spans1}  # not merged with defaults
    nlp3 = spacy.util.load_model_from_config(nlp.config, auto_fill=True)
    assert span_keys(nlp3(text)) == spans1


def test_pickle_after_use(nlp, lex):
    lex(char_doc(nlp.vocab, "测试"))
    clone = pickle.loads(pickle.dumps(lex))
    assert not clone.is_initialized
    doc = clone(char_doc(nlp.vocab, "张三在北京工作。"))
    assert len(doc.spans[KEY]) > 0


def test_multiprocessing_pipe(nlp):
    texts = TEXTS * 3
    serial = [[(s.start, s.end, s.label_) for s in d.spans[KEY]] for d in nlp.pipe(texts)]
    parallel = [[(s.start, s.end, s.label_) for s in d.spans[KEY]] for d in nlp.pipe(texts, n_process=2, batch_size=4)]
    assert parallel == serial
    assert all(serial)


def test_lexicon_pos_labels_survive_pos_normalisation(nlp, lex):
    doc = lex(char_doc(nlp.vocab, TEXTS[2]))
    for s in by_label(doc, "POS:"):
        assert normalize_pos_tag(s.label_[4:]) == s.label_[4:]


def test_factory_is_registered_through_the_entry_point():
    # a fresh interpreter that never imports spacy_knowfree: spaCy must find
    # the factory through the spacy_factories entry point alone
    code = (
        "import spacy; nlp = spacy.blank('zh'); pipe = nlp.add_pipe('knowfree_lexicon'); "
        "print(type(pipe).__module__, pipe.spans_key)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [lexicon_module.__name__, EXTENSION_SPANS_KEY]
