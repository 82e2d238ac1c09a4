"""Synonymous label merging (KnowFREE paper, section 3.1, eq. 2-8).

LLM-extracted extension entities come with types spelled many ways (人名,
人物, 姓名, PER ...). An LLM proposes synonym groups ``{standard: [members]}``
(``P_merge``, eq. 2-3; :mod:`.prompt`); the groups are then checked against
the entities themselves: every ``(entity, type)`` pair is embedded as
``"<entity>是<type>"`` (eq. 4-5, :mod:`.embeddings`), and a member type is
merged into its group's standard label only if its centroid lies close
enough to the reference type's (eq. 6-8, :mod:`.decision`, a pure function
of labels and vectors). The result is a reviewable JSON :class:`LabelMap`
(:mod:`.label_map`), applied to ``doc.spans["knowfree_ext"]`` with
:func:`apply_label_map` / :func:`apply_label_map_to_docbin` (:mod:`.apply`).

POS tags from LLMs (``noun``, ``NOUN``, ``名词``, ``n``) are merged onto
Universal POS tags with :func:`merge_pos_spellings`.

Importing this package needs no optional extra: the embeddings need
sentence-transformers and the P_merge prompt spacy-llm's extra only when used.
"""

from ...pos_tags import UPOS_TAGS, normalize_pos_tag
from .apply import (
    apply_label_map,
    apply_label_map_to_docbin,
    map_pos_spellings,
    merge_pos_spellings,
    merge_pos_spellings_in_docbin,
    pairs_from_docs,
    relabel_span_group,
    type_inventory,
)
from .decision import DEFAULT_EPSILON, DEFAULT_P, TypeStats, decide_label_merges, type_statistics
from .embeddings import (
    DEFAULT_TEMPLATE,
    ENGLISH_TEMPLATE,
    compute_label_map,
    default_embedding_model,
    embed_entity_pairs,
    load_embedding_model,
    render_pair,
)
from .label_map import LABEL_MAP_VERSION, LabelMap
from .prompt import build_merge_prompt, parse_merge_response

__all__ = [
    "DEFAULT_TEMPLATE",
    "ENGLISH_TEMPLATE",
    "DEFAULT_P",
    "DEFAULT_EPSILON",
    "LABEL_MAP_VERSION",
    "TypeStats",
    "type_statistics",
    "decide_label_merges",
    "LabelMap",
    "default_embedding_model",
    "load_embedding_model",
    "render_pair",
    "embed_entity_pairs",
    "compute_label_map",
    "pairs_from_docs",
    "type_inventory",
    "build_merge_prompt",
    "parse_merge_response",
    "relabel_span_group",
    "apply_label_map",
    "apply_label_map_to_docbin",
    "map_pos_spellings",
    "merge_pos_spellings",
    "merge_pos_spellings_in_docbin",
    "normalize_pos_tag",
    "UPOS_TAGS",
]
