"""KnowFREE pipeline 2: synthetic training text, flagged synthetic (weight beta).

* :mod:`.explanations`: enriched explanation synthesis (section 3.1, eq. 19);

and the peer augmenters, with the same output (a DocBin of docs flagged
synthetic), made by the methods KnowFREE compares against (appendix E):

* :mod:`.generation`: entity-conditioned sentence generation with entity
  diversification (LLM NER data generation, section 2);
* :mod:`.paraphrase`: context paraphrasing that keeps every entity string,
  verified after generation.

What they share: the LLM (:class:`spacy_knowfree.llm.runner.LLMRunner`: any
spacy-llm model, the response cache, resumable runs), the reply cleaner and
text checks (:mod:`.text`), the filters (:mod:`.filters`), the annotation of
synthetic docs (:mod:`.annotation`), the counts and log (:mod:`.summary`);
the augmenters also the :class:`.augmenter.Augmenter` protocol and entity
mentions (:mod:`.mentions`). The built-in Jinja templates are ``explanation``,
``description``, ``generation``, ``diversification`` and ``paraphrase`` (zh, en).

Self-training (:mod:`.pseudo_labels`) writes the same kind of flagged DocBin
from unlabeled docs annotated by a frozen knowfree pipeline, without an LLM.

The public names are imported on first access (PEP 562), so the modules that
need no LLM (:mod:`.annotation`, :mod:`.pseudo_labels`, :mod:`.summary`) work
without the ``llm`` extra: ``from spacy_knowfree.synthesis import X`` imports
only the module that defines ``X``.
"""

import importlib
from typing import TYPE_CHECKING, Any, Dict, List

if TYPE_CHECKING:  # for type checkers and IDEs; at run time see __getattr__
    from ..llm.runner import LLMRunner
    from .annotation import SyntheticAnnotator, flag_synthetic, is_synthetic_doc, load_annotator
    from .augmenter import Augmenter, AugmenterBase, read_template_override
    from .explanations import SynthesisSettings, Synthesizer, synthesize
    from .filters import FilterSettings, filter_generation
    from .generation import EntityGenerationAugmenter, EntityPool, GenerationSettings, format_entity, parse_marked
    from .mentions import find_mentions, make_span_doc
    from .paraphrase import ParaphraseAugmenter, ParaphraseSettings, place_mentions, read_variants
    from .pseudo_labels import PseudoLabeler, PseudoLabelStats, pseudo_label
    from .summary import Summary, write_records
    from .text import clean_generation, group_sentences, split_sentences

#: public name -> the module (relative to this package) that defines it
_MODULE_OF: Dict[str, str] = {
    "LLMRunner": "..llm.runner",
    **{name: ".annotation" for name in ("SyntheticAnnotator", "flag_synthetic", "is_synthetic_doc", "load_annotator")},
    **{name: ".augmenter" for name in ("Augmenter", "AugmenterBase", "read_template_override")},
    **{name: ".explanations" for name in ("SynthesisSettings", "Synthesizer", "synthesize")},
    **{name: ".filters" for name in ("FilterSettings", "filter_generation")},
    **{
        name: ".generation"
        for name in ("EntityGenerationAugmenter", "EntityPool", "GenerationSettings", "format_entity", "parse_marked")
    },
    **{name: ".mentions" for name in ("find_mentions", "make_span_doc")},
    **{
        name: ".paraphrase" for name in ("ParaphraseAugmenter", "ParaphraseSettings", "place_mentions", "read_variants")
    },
    **{name: ".pseudo_labels" for name in ("PseudoLabeler", "PseudoLabelStats", "pseudo_label")},
    **{name: ".summary" for name in ("Summary", "write_records")},
    **{name: ".text" for name in ("clean_generation", "group_sentences", "split_sentences")},
}

__all__ = [
    "Augmenter",
    "AugmenterBase",
    "EntityGenerationAugmenter",
    "EntityPool",
    "FilterSettings",
    "GenerationSettings",
    "LLMRunner",
    "ParaphraseAugmenter",
    "ParaphraseSettings",
    "PseudoLabelStats",
    "PseudoLabeler",
    "Summary",
    "SynthesisSettings",
    "Synthesizer",
    "SyntheticAnnotator",
    "clean_generation",
    "filter_generation",
    "find_mentions",
    "flag_synthetic",
    "format_entity",
    "group_sentences",
    "is_synthetic_doc",
    "load_annotator",
    "make_span_doc",
    "parse_marked",
    "place_mentions",
    "pseudo_label",
    "read_template_override",
    "read_variants",
    "split_sentences",
    "synthesize",
    "write_records",
]


def __getattr__(name: str) -> Any:
    """Import a public name from its module on first access (PEP 562)."""
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> List[str]:
    return sorted(set(globals()) | set(__all__))
