"""Word-boundary input features (jieba B/M/E/S + word length) in CharNgramEmbed."""

import numpy
import pytest
import spacy
from spacy.tokens import Doc
from thinc.api import fix_random_seed

pytest.importorskip("jieba")

from spacy_knowfree.layers.char_ngram_embed import build_char_ngram_embed, char_ngram_features  # noqa: E402
from spacy_knowfree.layers.word_boundary import LENGTH_BUCKETS, N_KEYS, TAGS, word_boundary_keys  # noqa: E402


def _key(tag: str, length: int) -> int:
    bucket = next((i for i, bound in enumerate(LENGTH_BUCKETS) if length <= bound), len(LENGTH_BUCKETS))
    return 1 + TAGS.index(tag) * (len(LENGTH_BUCKETS) + 1) + bucket


def test_character_tokens_get_their_place_in_the_jieba_word():
    nlp = spacy.blank("zh")  # character tokens
    doc = nlp("我爱北京天安门")  # jieba: 我 / 爱 / 北京 / 天安门
    expected = [_key("S", 1), _key("S", 1), _key("B", 2), _key("E", 2), _key("B", 3), _key("M", 3), _key("E", 3)]
    assert word_boundary_keys(doc).tolist() == expected


def test_word_tokens_and_long_words_use_the_first_character():
    vocab = spacy.blank("zh").vocab
    # a token that is a whole word is S; one that starts a longer word is B;
    # a Latin word of 11 characters lands in the last length bucket
    doc = Doc(vocab, words=["北京", "天安", "门", "Programming"], spaces=[False, False, True, False])
    keys = word_boundary_keys(doc).tolist()
    assert keys == [_key("S", 2), _key("B", 3), _key("E", 3), _key("S", 11)]
    assert max(keys) < N_KEYS and _key("S", 11) == N_KEYS - 1
    assert word_boundary_keys(Doc(vocab, words=[])).shape == (0,)


def test_the_feature_column_is_appended_and_the_embedding_trains():
    nlp = spacy.blank("zh")
    docs = [nlp("我爱北京天安门"), nlp("李四去了上海。")]
    plain = char_ngram_features(["ORTH", "SHAPE"], trigrams=False)
    with_words = char_ngram_features(["ORTH", "SHAPE"], trigrams=False, word_boundaries=True)
    before, _ = plain(docs, is_train=False)
    after, _ = with_words(docs, is_train=False)
    for doc, a, b in zip(docs, before, after):
        assert b.shape == (len(doc), a.shape[1] + 1)
        numpy.testing.assert_array_equal(b[:, :-1], a)
        numpy.testing.assert_array_equal(b[:, -1], word_boundary_keys(doc))

    fix_random_seed(0)
    embed = build_char_ngram_embed(
        width=16, attrs=["ORTH", "SHAPE"], rows=[100, 50], ngram_rows=100, word_boundaries=True, boundary_rows=32
    )
    embed.initialize(X=docs)
    out, backprop = embed.begin_update(docs)
    assert [o.shape for o in out] == [(len(d), 16) for d in docs]
    tables = [node for node in embed.walk() if node.name.startswith("hashembed")]  # the boundary table is last
    assert len(tables) == 2 + 2 + 1 and tables[-1].get_dim("nV") == 32
    backprop([embed.ops.alloc2f(*o.shape) + 1.0 for o in out])
    assert tables[-1].has_grad("E") and numpy.abs(tables[-1].get_grad("E")).sum() > 0


def test_bad_boundary_rows_are_refused():
    with pytest.raises(ValueError, match="KF007"):
        build_char_ngram_embed(width=16, attrs=["ORTH"], rows=[100], word_boundaries=True, boundary_rows=0)
