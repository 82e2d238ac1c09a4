"""P_exp / P_ext: enriched explanations for synthesis (text replies)."""

from .task import (
    GENERATION_KEY,
    EntityExplanationTask,
    ExplanationTask,
    ExtensionDescriptionTask,
    make_entity_explanation_task,
    make_extension_description_task,
)

__all__ = [
    "GENERATION_KEY",
    "ExplanationTask",
    "EntityExplanationTask",
    "ExtensionDescriptionTask",
    "make_entity_explanation_task",
    "make_extension_description_task",
]
