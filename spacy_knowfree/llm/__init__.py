"""Label extension annotation with LLMs (KnowFREE section 3.1) for spacy-llm.

Importing this package registers, in spacy-llm's registries:

* tasks ``spacy-knowfree.ExtensionEntities.v1`` (P_ent, ``ENT:<type>``),
  ``spacy-knowfree.Segmentation.v1`` (P_seg, ``SEG:WORD``) and
  ``spacy-knowfree.POSTagging.v1`` (P_pos, ``POS:<TAG>``);
* text-generating tasks ``spacy-knowfree.EntityExplanation.v1`` (P_exp) and
  ``spacy-knowfree.ExtensionDescription.v1`` (P_ext) for enriched explanation
  synthesis: replies go to ``doc.user_data["knowfree_generation"]``;
* models ``spacy-knowfree.OpenAICompatible.v1`` and
  ``spacy-knowfree.LocalCausalLM.v1``;
* misc ``spacy-knowfree.ResponseCache.v1`` and
  ``spacy-knowfree.CJKTokenEstimator.v1``.

All spans are appended to ``doc.spans["knowfree_ext"]`` (configurable), and
per-doc counts of dropped and repaired items go to
``doc.user_data["knowfree_llm_stats"]`` (see :mod:`.tasks.stats`).
"""

from .cache import ResponseCache, make_response_cache
from .models.local_causal_lm import LocalCausalLM, make_local_causal_lm
from .models.openai_compatible import BackendRequestError, OpenAICompatibleModel, make_openai_compatible_model
from .parsing import ParsedReply, parse_json_items
from .tasks.entities.task import ExtensionEntitiesTask, make_extension_entities_task
from .tasks.explanation.task import (
    GENERATION_KEY,
    EntityExplanationTask,
    ExtensionDescriptionTask,
    make_entity_explanation_task,
    make_extension_description_task,
)
from .tasks.pos.task import POSTaggingTask, make_pos_task
from .tasks.segmentation.task import SegmentationTask, make_segmentation_task
from .tasks.sharding import count_tokens_cjk
from .tasks.stats import STATS_KEY, format_stats, get_stats, summarize_stats

__all__ = [
    "BackendRequestError",
    "EntityExplanationTask",
    "ExtensionDescriptionTask",
    "GENERATION_KEY",
    "ExtensionEntitiesTask",
    "LocalCausalLM",
    "OpenAICompatibleModel",
    "POSTaggingTask",
    "ParsedReply",
    "ResponseCache",
    "STATS_KEY",
    "SegmentationTask",
    "count_tokens_cjk",
    "format_stats",
    "get_stats",
    "make_entity_explanation_task",
    "make_extension_description_task",
    "make_extension_entities_task",
    "make_local_causal_lm",
    "make_openai_compatible_model",
    "make_pos_task",
    "make_response_cache",
    "make_segmentation_task",
    "parse_json_items",
    "summarize_stats",
]
