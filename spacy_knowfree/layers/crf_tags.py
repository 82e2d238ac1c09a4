"""The CRF peer's tags as an input feature: one hashed key per token from
``doc.user_data["knowfree_crf_tags"]`` (written by the ``knowfree_crf``
component, :mod:`spacy_knowfree.peer.crf_peer`)."""

import functools
import hashlib
from typing import Sequence

import numpy
from spacy.tokens import Doc
from thinc.api import Model

from ..constants import CRF_TAGS_KEY
from ..errors import Errors

#: The key of a doc that has no CRF tags (the knowfree component refuses such
#: docs at predict and update; only the docs that initialize a model see it).
NO_TAGS = numpy.uint64(0)


@functools.lru_cache(maxsize=4096)
def tag_key(tag: str) -> int:
    """The uint64 key of a CRF tag (the first 8 bytes of its BLAKE2b hash)."""
    return int.from_bytes(hashlib.blake2b(tag.encode("utf8"), digest_size=8).digest(), "little")


def has_crf_tags(doc: Doc) -> bool:
    """Whether ``doc`` carries one CRF tag per token."""
    tags = doc.user_data.get(CRF_TAGS_KEY)
    return tags is not None and len(tags) == len(doc)


def crf_tag_keys(doc: Doc) -> numpy.ndarray:
    """One uint64 key per token of ``doc``: the hash of its CRF tag, or
    :data:`NO_TAGS` for every token when the doc has no tags."""
    if not has_crf_tags(doc):
        return numpy.full((len(doc),), NO_TAGS, dtype="uint64")
    return numpy.fromiter((tag_key(tag) for tag in doc.user_data[CRF_TAGS_KEY]), dtype="uint64", count=len(doc))


def embeds_crf_tags(model: Model) -> bool:
    """Whether ``model`` holds a ``CharNgramEmbed`` with ``crf_tags = true``."""
    return any(node.name == "char_ngram_features" and node.attrs.get("crf_tags") for node in model.walk())


def check_crf_tags(model: Model, docs: Sequence[Doc], name: str) -> None:
    """Raise KF024 when ``model`` embeds CRF tags and some of ``docs`` have none
    (the ``knowfree_crf`` component is missing, or not annotating in training)."""
    if not embeds_crf_tags(model):
        return
    missing = sum(1 for doc in docs if len(doc) and not has_crf_tags(doc))
    if missing:
        raise ValueError(Errors.KF024.format(name=name, n=missing, total=len(docs), key=CRF_TAGS_KEY))
