"""The registered embedding ``spacy-knowfree.CharNgramEmbed.v1``: hashed
token attributes plus hashed character n-grams, for character tokens.

A character-based Chinese tagger gets much of its strength from character
bigrams (is "北京" a word? does "公司" end an organisation?). spaCy's
``MultiHashEmbed`` embeds each token on its own; this layer adds, for every
token, the bigrams it forms with its left and right neighbours
(previous+current, current+next) and optionally the trigram centred on it,
each hashed into its own ``HashEmbed`` table. The n-gram keys are computed
from the doc alone with vectorised numpy over ``doc.to_array`` (no Python loop
per token), so the layer is serialized with the pipeline like any embedding.

An n-gram feature is only given to *character* tokens, tokens of one
character (what ``spacy.zh.ChineseTokenizer`` with ``segmenter = "char"``
makes of CJK text, Latin letters and digits). A longer token (an English
word from a word tokenizer, a number kept whole) gets the reserved key 0 for
its n-gram features and so falls back to its ``attrs`` embeddings, as in
``MultiHashEmbed``.

With ``word_boundaries = true`` each token also gets its place in the jieba
word that holds it and that word's length (:mod:`.word_boundary`), hashed
into one more table: lexicon knowledge in the input. With ``word_tags =
true`` it also gets jieba's part-of-speech tag of that word (``nr`` person,
``ns`` place, ``nt`` organisation, ...) with its place in the word
(:mod:`.word_tags`), hashed into another table. With ``crf_tags = true``
it gets the BIOES tag that the ``knowfree_crf`` component's CRF gave it
(:mod:`.crf_tags`): the classic peer's decision as an input.
"""

from typing import List, Sequence, Tuple, Union, cast

import numpy
from spacy.attrs import LENGTH, ORTH, intify_attr
from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import HashEmbed, Maxout, Model, chain, concatenate, list2ragged, ragged2list, with_array
from thinc.types import Floats2d, Ints2d, Ragged

from ..errors import Errors
from .crf_tags import crf_tag_keys
from .word_boundary import word_boundary_keys
from .word_tags import word_tag_keys

# Keys past the edges of a doc (any fixed values; HashEmbed hashes them again).
_BEFORE = numpy.uint64(0x5B3C1A2F3E4D5C6B)
_AFTER = numpy.uint64(0x1F2E3D4C5B6A7988)
_MIX = numpy.uint64(0x9E3779B97F4A7C15)  # 2^64 / golden ratio: spreads the left key
_NO_NGRAM = numpy.uint64(0)


def _mix(left: numpy.ndarray, right: numpy.ndarray) -> numpy.ndarray:
    """An order-sensitive uint64 key of two uint64 keys (wrapping arithmetic)."""
    with numpy.errstate(over="ignore"):
        return (left * _MIX + right) ^ (right >> numpy.uint64(29))


def neighbour_keys(orth: numpy.ndarray, offset: int) -> numpy.ndarray:
    """The uint64 ORTH key ``offset`` tokens away from every token (``_BEFORE``
    before the first token, ``_AFTER`` past the last)."""
    pad = abs(offset)
    padded = numpy.concatenate([[_BEFORE] * pad, orth.astype("uint64"), [_AFTER] * pad]).astype("uint64")
    return padded[pad + offset : pad + offset + len(orth)]


def ngram_keys(orth: numpy.ndarray, is_char: numpy.ndarray, trigrams: bool) -> numpy.ndarray:
    """(n_tokens, 2 or 3) uint64 keys: left bigram, right bigram[, centred trigram].

    orth (numpy.ndarray): uint64 ORTH ids of a doc's tokens.
    is_char (numpy.ndarray): bool, which tokens get n-gram features; the
        others get ``_NO_NGRAM`` (0) in every column.
    """
    orth = orth.astype("uint64")
    previous, following = neighbour_keys(orth, -1), neighbour_keys(orth, 1)
    columns = [_mix(previous, orth), _mix(orth, following)]
    if trigrams:
        columns.append(_mix(_mix(previous, orth), following))
    keys = numpy.stack(columns, axis=1) if len(orth) else numpy.zeros((0, len(columns)), "uint64")
    keys[~is_char] = _NO_NGRAM
    return keys


def char_ngram_features(
    attrs: Sequence[Union[str, int]],
    trigrams: bool,
    word_boundaries: bool = False,
    word_tags: bool = False,
    crf_tags: bool = False,
) -> Model[List[Doc], List[Ints2d]]:
    """Docs -> per doc, uint64 keys: the ``attrs`` columns, the n-gram columns,
    then (``word_boundaries``) the word-boundary column, (``word_tags``) the
    word-tag column and (``crf_tags``) the CRF-tag column."""
    attr_ids = [intify_attr(attr) for attr in attrs]
    lookup = [*attr_ids, ORTH, LENGTH]

    def forward(model: Model, docs: List[Doc], is_train: bool) -> Tuple[List[Ints2d], object]:
        output = []
        for doc in docs:
            table = doc.to_array(lookup).astype("uint64").reshape((len(doc), len(lookup)))
            n = len(attr_ids)
            is_char = table[:, n + 1] == 1
            columns = [table[:, :n], ngram_keys(table[:, n], is_char, trigrams)]
            if word_boundaries:
                columns.append(word_boundary_keys(doc)[:, None])
            if word_tags:
                columns.append(word_tag_keys(doc)[:, None])
            if crf_tags:
                columns.append(crf_tag_keys(doc)[:, None])
            output.append(model.ops.asarray(numpy.hstack(columns), dtype="uint64"))  # type: ignore[arg-type]
        return output, lambda d_output: []  # type: ignore[return-value]

    return Model(
        "char_ngram_features",
        forward,
        attrs={
            "attrs": list(attrs),
            "trigrams": trigrams,
            "word_boundaries": word_boundaries,
            "word_tags": word_tags,
            "crf_tags": crf_tags,
        },
    )


@registry.architectures("spacy-knowfree.CharNgramEmbed.v1")
def build_char_ngram_embed(
    width: int,
    attrs: List[str],
    rows: List[int],
    ngram_rows: int = 20000,
    trigrams: bool = False,
    word_boundaries: bool = False,
    boundary_rows: int = 64,
    word_tags: bool = False,
    tag_rows: int = 512,
    crf_tags: bool = False,
    crf_tag_rows: int = 128,
) -> Model[List[Doc], List[Floats2d]]:
    """Hash embeddings of token attributes and character n-grams, mixed by a
    Maxout layer (the shape of spaCy's ``MultiHashEmbed``).

    width (int): output width, and width of every embedding table.
    attrs (List[str]): token attributes to embed (e.g. ``["ORTH", "SHAPE"]``).
    rows (List[int]): rows of each attribute's table, one per attribute.
    ngram_rows (int): rows of each n-gram table (left bigram, right bigram,
        and the trigram when ``trigrams``).
    trigrams (bool): also embed the trigram centred on each character.
    word_boundaries (bool): also embed each token's place in its jieba word
        (B/M/E/S) and the word's length bucket (:mod:`.word_boundary`).
    boundary_rows (int): rows of the word-boundary table (the features take
        25 distinct values).
    word_tags (bool): also embed jieba's part-of-speech tag of the word that
        holds each token, with the token's place in it (:mod:`.word_tags`).
        Off by default; the packaged CPU configs turn it on since 0.5.0 (what
        it measured on dev: ``benchmarks/notes/encoder_dev.md``).
    tag_rows (int): rows of the word-tag table (the features take 232
        distinct values).
    crf_tags (bool): also embed the BIOES tag of each token from the
        ``knowfree_crf`` component, which must come before this model's
        component in the pipeline (and be listed in ``[training]
        annotating_components``). Off by default.
    crf_tag_rows (int): rows of the CRF-tag table (4 tags per label, and O).
    RETURNS (Model[List[Doc], List[Floats2d]]): a vector of ``width`` per token.
    """
    checks = [
        ("width", width, width > 0, "must be positive"),
        (
            "rows",
            rows,
            len(rows) == len(attrs) and all(r > 0 for r in rows),
            "needs one positive row count per attribute in 'attrs'",
        ),
        ("ngram_rows", ngram_rows, ngram_rows > 0, "must be positive"),
        ("boundary_rows", boundary_rows, boundary_rows > 0, "must be positive"),
        ("tag_rows", tag_rows, tag_rows > 0, "must be positive"),
        ("crf_tag_rows", crf_tag_rows, crf_tag_rows > 0, "must be positive"),
    ]
    for arg, value, ok, hint in checks:
        if not ok:
            raise ValueError(Errors.KF007.format(arg=arg, value=value, hint=hint))
    table_rows = [
        *rows,
        *([ngram_rows] * (3 if trigrams else 2)),
        *([boundary_rows] if word_boundaries else []),
        *([tag_rows] if word_tags else []),
        *([crf_tag_rows] if crf_tags else []),
    ]
    embeddings: List[Model] = [
        HashEmbed(width, n_rows, column=i, seed=8 + i, dropout=0.0) for i, n_rows in enumerate(table_rows)
    ]
    return chain(
        char_ngram_features(attrs, trigrams, word_boundaries, word_tags, crf_tags),
        cast(Model[List[Ints2d], Ragged], list2ragged()),
        with_array(concatenate(*embeddings)),
        with_array(Maxout(width, width * len(embeddings), nP=3, dropout=0.0, normalize=True)),
        ragged2list(),
    )
