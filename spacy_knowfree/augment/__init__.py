"""Peer augmenters: the same output as enriched explanation synthesis (a
DocBin of docs flagged synthetic), made by the methods KnowFREE compares
against (appendix E).

* :mod:`.generation`: entity-conditioned sentence generation with entity
  diversification (LLM NER data generation, section 2);
* :mod:`.paraphrase`: context paraphrasing that keeps every entity string,
  verified after generation.

Both use :class:`spacy_knowfree.synthesis.LLMRunner` (any spacy-llm model,
the response cache, resumable runs) and the built-in Jinja templates
``generation``, ``diversification`` and ``paraphrase`` (zh, en).
"""
from .common import find_mentions, make_span_doc, read_template_override
from .generation import EntityGenerationAugmenter, EntityPool, GenerationSettings, format_entity, parse_marked
from .paraphrase import ParaphraseAugmenter, ParaphraseSettings, place_mentions, read_variants

__all__ = [
    "EntityGenerationAugmenter",
    "EntityPool",
    "GenerationSettings",
    "ParaphraseAugmenter",
    "ParaphraseSettings",
    "find_mentions",
    "format_entity",
    "make_span_doc",
    "parse_marked",
    "place_mentions",
    "read_template_override",
    "read_variants",
]
