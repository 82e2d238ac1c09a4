"""Word-tag input features from jieba's part-of-speech segmentation of a doc.

:mod:`.word_boundary` tells each character where it sits in its jieba word.
This module adds *what* that word is: jieba's tag of the word that holds the
token (``nr`` person name, ``ns`` place, ``nt`` organisation, ``n`` noun,
``v`` verb, ... from jieba's dictionary, or from its HMM for words the
dictionary does not know) together with the token's place in the word
(B/M/E/S). The pair is one small integer key per token, which
:func:`spacy_knowfree.layers.char_ngram_embed.build_char_ngram_embed`
(``word_tags = true``) hashes into an embedding table of its own. The lexicon
component (:mod:`spacy_knowfree.knowledge.lexicon`) puts the same tags into
the loss as extension labels; here they reach the model through its input.

The tags come from ``jieba.posseg`` with jieba's default dictionary and HMM,
over the private tokenizer of :mod:`.word_boundary` (a user dictionary loaded
into ``jieba`` elsewhere does not change the features of a trained pipeline). They are computed from
``doc.text`` alone, for any tokenization: a token gets the tag of the word
that holds its first character. Results are cached per text, so the epochs of
a training run tag each sentence once. Tagging costs more than segmenting
(jieba's POS HMM); ``benchmarks/speed.py`` reports what it adds at inference.
"""

import functools
from typing import Any, Tuple

import numpy
from spacy.tokens import Doc

from .word_boundary import TAGS, jieba_tokenizer, token_places

#: jieba's tag set (its dictionary's tags and the HMM's); any other tag shares
#: the last index.
JIEBA_TAGS = (
    "a ad ag an b c d df dg e eng f g h i j k l m mg mq n ng nr nrfg nrt ns nt nz "
    "o p q r rg rr rz s t tg u ud ug uj ul uv uz v vd vg vi vn vq x y yg z zg"
).split()
_TAG_INDEX = {tag: i for i, tag in enumerate(JIEBA_TAGS)}
#: Place of a token's first character in its word (:mod:`.word_boundary`'s tags).
PLACES = TAGS
#: Distinct keys :func:`word_tag_keys` returns (key 0 is never used).
N_KEYS = 1 + (len(JIEBA_TAGS) + 1) * len(PLACES)


@functools.lru_cache(maxsize=None)
def _posseg() -> Any:
    """A jieba POS segmenter of this process over :mod:`.word_boundary`'s tokenizer
    (one default dictionary for both features; built once, cheap to build again
    should two threads race)."""
    import jieba.posseg

    return jieba.posseg.POSTokenizer(jieba_tokenizer())


@functools.lru_cache(maxsize=65536)
def tagged_words(text: str) -> Tuple[numpy.ndarray, numpy.ndarray, numpy.ndarray]:
    """For every character of ``text``: the start and end offsets of the jieba
    word that holds it and that word's tag index in :data:`JIEBA_TAGS` (three
    int32 arrays of ``len(text)``)."""
    starts = numpy.zeros(len(text), dtype="int32")
    ends = numpy.zeros(len(text), dtype="int32")
    tags = numpy.full(len(text), len(JIEBA_TAGS), dtype="int32")
    pos = 0
    for pair in _posseg().cut(text, HMM=True):
        if not pair.word:
            continue
        # jieba returns the text's words in order; find() only guards against surprises
        start = pos if text.startswith(pair.word, pos) else text.find(pair.word, pos)
        if start < 0:
            continue
        end = start + len(pair.word)
        starts[start:end] = start
        ends[start:end] = end
        tags[start:end] = _TAG_INDEX.get(pair.flag, len(JIEBA_TAGS))
        pos = end
    for array in (starts, ends, tags):
        array.flags.writeable = False  # shared by the cache
    return starts, ends, tags


def word_tag_keys(doc: Doc) -> numpy.ndarray:
    """One key per token of ``doc``: ``1 + tag * 4 + place`` (uint64), where
    ``tag`` indexes :data:`JIEBA_TAGS` (the tag of the jieba word holding the
    token's first character) and ``place`` :data:`PLACES`."""
    if len(doc) == 0:
        return numpy.zeros((0,), dtype="uint64")
    starts, ends, tags = tagged_words(doc.text)
    first, place = token_places(doc, starts, ends)
    return (1 + tags[first] * len(PLACES) + place).astype("uint64")
