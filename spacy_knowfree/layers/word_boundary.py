"""Word-boundary input features from the jieba segmentation of a doc.

A character tagger does not see words. This module gives each token the
place of its first character in the jieba word that holds it, B (begins a
longer word), M (inside), E (ends it) or S (a word of its own), together
with a bucket of that word's length (1, 2, 3, 4, 5-6, 7+ characters). The
pair is one small integer key per token, which
:func:`spacy_knowfree.layers.char_ngram_embed.build_char_ngram_embed`
(``word_boundaries = true``) hashes into an embedding table of its own. So
lexicon knowledge reaches the model through its input, while extension
labels (``knowfree extend``) reach it through the loss.

The segmentation uses jieba's default dictionary and HMM, with a tokenizer
private to this module (a user dictionary loaded into ``jieba`` elsewhere
does not change the features of a trained pipeline). It is computed from
``doc.text`` alone, for any tokenization: a token that is a whole word is S,
one that starts a longer word is B. Segmentations are cached per text, so the
epochs of a training run segment each sentence once.
"""

import functools
import threading
from typing import Any, Optional, Tuple

import numpy
from spacy.attrs import IDX, LENGTH
from spacy.tokens import Doc

from ..knowledge.lexicon import new_jieba_tokenizer

#: Place of a token's first character in its word.
TAGS = ("B", "M", "E", "S")
#: Upper bounds (inclusive) of the word-length buckets; longer words share the last.
LENGTH_BUCKETS = (1, 2, 3, 4, 6)
#: Distinct keys :func:`word_boundary_keys` returns (key 0 is never used).
N_KEYS = 1 + len(TAGS) * (len(LENGTH_BUCKETS) + 1)

_LOCK = threading.Lock()
_TOKENIZER: Optional[Any] = None


def jieba_tokenizer() -> Any:
    """A jieba tokenizer of this process with the default dictionary (built once)."""
    global _TOKENIZER
    if _TOKENIZER is None:
        with _LOCK:
            if _TOKENIZER is None:
                _TOKENIZER = new_jieba_tokenizer("CharNgramEmbed (word_boundaries, word_tags)")
    return _TOKENIZER


@functools.lru_cache(maxsize=65536)
def segment_bounds(text: str) -> Tuple[numpy.ndarray, numpy.ndarray]:
    """For every character of ``text``, the start and end offsets of the jieba
    word that holds it (two int32 arrays of ``len(text)``)."""
    starts = numpy.zeros(len(text), dtype="int32")
    ends = numpy.zeros(len(text), dtype="int32")
    for _, start, end in jieba_tokenizer().tokenize(text, HMM=True):
        starts[start:end] = start
        ends[start:end] = end
    starts.flags.writeable = False  # shared by the cache
    ends.flags.writeable = False
    return starts, ends


def token_places(doc: Doc, starts: numpy.ndarray, ends: numpy.ndarray) -> Tuple[numpy.ndarray, numpy.ndarray]:
    """The first character offset of every token of a non-empty ``doc`` and
    the token's place (an index of :data:`TAGS`) in the word holding that
    character, given every character's word ``starts`` and ``ends``."""
    table = doc.to_array([IDX, LENGTH]).reshape((len(doc), 2)).astype("int64")
    first, last = table[:, 0], table[:, 0] + table[:, 1]  # a token's character offsets
    begins = first == starts[first]
    finishes = last >= ends[first]
    return first, numpy.where(begins, numpy.where(finishes, 3, 0), numpy.where(finishes, 2, 1))


def word_boundary_keys(doc: Doc) -> numpy.ndarray:
    """One key per token of ``doc``: ``1 + tag * 6 + length bucket`` (uint64),
    where ``tag`` indexes :data:`TAGS` and the bucket :data:`LENGTH_BUCKETS`
    (the last bucket is longer than all of them)."""
    if len(doc) == 0:
        return numpy.zeros((0,), dtype="uint64")
    starts, ends = segment_bounds(doc.text)
    first, tag = token_places(doc, starts, ends)
    bucket = numpy.searchsorted(numpy.asarray(LENGTH_BUCKETS), ends[first] - starts[first], side="left")
    return (1 + tag * (len(LENGTH_BUCKETS) + 1) + bucket).astype("uint64")
