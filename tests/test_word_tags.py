"""Word-tag input features (jieba POS tag of the word + place in it) in CharNgramEmbed."""

import numpy
import pytest
import spacy
from spacy.tokens import Doc
from thinc.api import fix_random_seed

pytest.importorskip("jieba")

from spacy_knowfree.layers.char_ngram_embed import build_char_ngram_embed, char_ngram_features  # noqa: E402
from spacy_knowfree.layers.word_tags import JIEBA_TAGS, N_KEYS, PLACES, word_tag_keys  # noqa: E402


def _key(tag: str, place: str) -> int:
    return 1 + (JIEBA_TAGS.index(tag) if tag in JIEBA_TAGS else len(JIEBA_TAGS)) * len(PLACES) + PLACES.index(place)


def test_character_tokens_get_the_tag_of_their_jieba_word():
    nlp = spacy.blank("zh")  # character tokens
    doc = nlp("李明在北京工作")  # jieba.posseg: 李明/nr 在/p 北京/ns 工作/vn
    expected = [
        _key("nr", "B"),
        _key("nr", "E"),
        _key("p", "S"),
        _key("ns", "B"),
        _key("ns", "E"),
        _key("vn", "B"),
        _key("vn", "E"),
    ]
    assert word_tag_keys(doc).tolist() == expected


def test_word_tokens_unknown_tags_and_empty_docs():
    vocab = spacy.blank("zh").vocab
    # a token that is a whole word is S, one that starts a longer word is B;
    # an English word is tagged "eng"
    doc = Doc(vocab, words=["北京", "天安", "门", "Python"], spaces=[False, False, True, False])
    keys = word_tag_keys(doc).tolist()
    assert keys == [_key("ns", "S"), _key("ns", "B"), _key("ns", "E"), _key("eng", "S")]
    assert _key("not-a-jieba-tag", "S") == N_KEYS - 1 and max(keys) < N_KEYS
    assert word_tag_keys(Doc(vocab, words=[])).shape == (0,)


def test_the_tag_column_comes_after_the_boundary_column_and_trains():
    nlp = spacy.blank("zh")
    docs = [nlp("李明在北京工作"), nlp("我爱北京天安门。")]
    words = char_ngram_features(["ORTH", "SHAPE"], trigrams=False, word_boundaries=True)
    tagged = char_ngram_features(["ORTH", "SHAPE"], trigrams=False, word_boundaries=True, word_tags=True)
    before, _ = words(docs, is_train=False)
    after, _ = tagged(docs, is_train=False)
    for doc, a, b in zip(docs, before, after):
        assert b.shape == (len(doc), a.shape[1] + 1)
        numpy.testing.assert_array_equal(b[:, :-1], a)
        numpy.testing.assert_array_equal(b[:, -1], word_tag_keys(doc))

    fix_random_seed(0)
    embed = build_char_ngram_embed(
        width=16, attrs=["ORTH"], rows=[100], ngram_rows=100, word_boundaries=True, word_tags=True, tag_rows=64
    )
    embed.initialize(X=docs)
    out, backprop = embed.begin_update(docs)
    assert [o.shape for o in out] == [(len(d), 16) for d in docs]
    tables = [node for node in embed.walk() if node.name.startswith("hashembed")]  # the tag table is last
    assert len(tables) == 1 + 2 + 1 + 1 and tables[-1].get_dim("nV") == 64
    backprop([embed.ops.alloc2f(*o.shape) + 1.0 for o in out])
    assert numpy.abs(tables[-1].get_grad("E")).sum() > 0


def test_a_pipeline_with_word_tags_round_trips(tmp_path):
    nlp = spacy.blank("zh")
    config = {
        "model": {
            "@architectures": "spacy.Tok2Vec.v2",
            "embed": {
                "@architectures": "spacy-knowfree.CharNgramEmbed.v1",
                "width": 16,
                "attrs": ["ORTH"],
                "rows": [100],
                "ngram_rows": 100,
                "word_tags": True,
                "tag_rows": 64,
            },
            "encode": {
                "@architectures": "spacy.MaxoutWindowEncoder.v2",
                "width": 16,
                "window_size": 1,
                "maxout_pieces": 2,
                "depth": 1,
            },
        }
    }
    nlp.add_pipe("tok2vec", config=config)
    nlp.initialize()
    doc = nlp("李明在北京工作")
    nlp.to_disk(tmp_path)
    loaded = spacy.load(tmp_path)
    numpy.testing.assert_array_equal(loaded("李明在北京工作").tensor, doc.tensor)


def test_bad_tag_rows_are_refused():
    with pytest.raises(ValueError, match="KF007"):
        build_char_ngram_embed(width=16, attrs=["ORTH"], rows=[100], word_tags=True, tag_rows=0)
