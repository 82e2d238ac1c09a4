"""Enriched explanation prompts (KnowFREE section 3.1, appendix G figures 11-12).

Two spacy-llm tasks generate *text*, not spans:

* ``spacy-knowfree.EntityExplanation.v1`` (P_exp) for sentences with target
  entities: the prompt gives the sentence and its entities with their types,
  and the LLM, as a domain expert teaching students, continues the text and
  explains what each entity means in context;
* ``spacy-knowfree.ExtensionDescription.v1`` (P_ext) for sentences without
  target entities: the LLM picks key phrases itself, continues the text and
  explains them.

The reply is appended to ``doc.user_data["knowfree_generation"]`` as
``{"prompt": "P_exp" | "P_ext", "text": reply}``; no span is written. The
synthesis step (:mod:`spacy_knowfree.synthesis.explanations`) cleans the text, splits it
into sentences and annotates them.

Why two tasks and not one that picks the prompt per doc: the prompts take
different inputs (P_ext has no entity list), have their own templates and
few-shot examples, and each is a complete spacy-llm task that works on every
doc it is given. Which doc gets which prompt is a data decision (does the doc
have target spans?), made once by the synthesis code, which routes docs to
the two tasks; in a spaCy config each task can be replaced independently.
"""

from typing import Any, Dict, Iterable, List, Optional, Tuple, Union

from pydantic import BaseModel
from spacy.tokens import Doc
from spacy.training import Example
from spacy_llm.registry import registry
from spacy_llm.ty import ExamplesConfigType, FewshotExample

from ....constants import GENERATION_KEY
from ..examples import read_examples
from ..prompts import PromptedTask

#: ``doc.user_data`` key of the generated texts (a list of dicts).
P_EXP = "P_exp"
P_EXT = "P_ext"


class ExplainedEntity(BaseModel):
    """An entity of a few-shot example: its text and (readable) type."""

    text: str
    type: str


class ExplanationExample(FewshotExample):
    """A few-shot example: a sample, its entities (P_exp only) and the model answer."""

    text: str
    entities: List[ExplainedEntity] = []
    answer: str

    @classmethod
    def generate(cls, example: Example, task: Any) -> Optional["ExplanationExample"]:
        """Gold explanations do not exist in NER data: nothing to generate."""
        return None


class ExplanationTask(PromptedTask):
    """Base of the two text-generating tasks (spacy-llm non-sharding task protocol)."""

    #: Prompt id written next to the reply ("P_exp" or "P_ext").
    prompt_id: str = ""

    def __init__(
        self,
        *,
        lang: str = "zh",
        template: Optional[str] = None,
        prompt_examples: Optional[List[ExplanationExample]] = None,
        spans_key: str = "sc",
        label_names: Optional[Dict[str, str]] = None,
        max_entities: int = 20,
    ):
        """See :func:`make_entity_explanation_task`."""
        self._init_prompt(lang, template, prompt_examples, spans_key)
        self._label_names = dict(label_names or {})
        self._max_entities = max_entities

    def entities(self, doc: Doc) -> List[Tuple[str, str]]:
        """The doc's target entities as distinct (text, readable type) pairs, in text order.

        Read from ``doc.spans[spans_key]``, else from ``doc.ents``; types are
        renamed with ``label_names`` (e.g. ``{"PER.NAM": "人名"}``).
        """
        spans = list(doc.spans[self._spans_key]) if self._spans_key in doc.spans else list(doc.ents)
        seen: Dict[Tuple[str, str], None] = {}
        for span in sorted(spans, key=lambda s: (s.start, -s.end)):
            text = span.text.strip()
            if text:
                seen.setdefault((text, self._label_names.get(span.label_, span.label_)), None)
        return list(seen)[: self._max_entities]

    def _prompt_data(self, doc: Doc) -> Dict[str, Any]:
        return {"entities": []}

    def render_prompt(self, doc: Doc) -> str:
        """The prompt for one doc."""
        return self._renderer(text=doc.text, examples=self._prompt_examples, **self._prompt_data(doc))

    def generate_prompts(
        self, docs: Iterable[Doc], context_length: Optional[int] = None
    ) -> Iterable[Tuple[Iterable[str], Iterable[Doc]]]:
        """One prompt per doc; the doc is its own single shard (sentences are
        short, and an explanation needs the whole sentence).

        docs (Iterable[Doc]): source sentences.
        context_length (Optional[int]): ignored (no sharding).
        RETURNS (Iterable[Tuple[Iterable[str], Iterable[Doc]]]): ([prompt], [doc]) per doc.
        """
        for doc in docs:
            yield [self.render_prompt(doc)], [doc]

    def parse_responses(self, shards: Iterable[Iterable[Doc]], responses: Iterable[Iterable[str]]) -> Iterable[Doc]:
        """Store each reply on its doc, in ``doc.user_data[GENERATION_KEY]``.

        shards (Iterable[Iterable[Doc]]): per doc, the doc itself (from generate_prompts).
        responses (Iterable[Iterable[str]]): per doc, its reply.
        RETURNS (Iterable[Doc]): the docs.
        """
        for shards_for_doc, replies in zip(shards, responses):
            doc = list(shards_for_doc)[0]
            # a list again: DocBin (msgpack) gives earlier entries back as a tuple
            generated = list(doc.user_data.get(GENERATION_KEY) or [])
            for reply in [replies] if isinstance(replies, str) else replies:
                generated.append({"prompt": self.prompt_id, "text": str(reply)})
            doc.user_data[GENERATION_KEY] = generated
            yield doc


class EntityExplanationTask(ExplanationTask):
    """P_exp: continue the sentence and explain each target entity in context."""

    #: ``spacy-knowfree.EntityExplanation.v1`` reads ``templates/explanation.v1.<lang>.jinja``.
    task_name = "explanation"
    prompt_id = P_EXP

    def _prompt_data(self, doc: Doc) -> Dict[str, Any]:
        return {"entities": [{"text": t, "type": label} for t, label in self.entities(doc)]}


class ExtensionDescriptionTask(ExplanationTask):
    """P_ext: extract key phrases, continue the sentence and explain them."""

    #: ``spacy-knowfree.ExtensionDescription.v1`` reads ``templates/description.v1.<lang>.jinja``.
    task_name = "description"
    prompt_id = P_EXT


@registry.llm_tasks("spacy-knowfree.EntityExplanation.v1")
def make_entity_explanation_task(
    lang: str = "zh",
    template: Optional[str] = None,
    examples: ExamplesConfigType = None,
    spans_key: str = "sc",
    label_names: Union[Dict[str, str], None] = None,
    max_entities: int = 20,
) -> EntityExplanationTask:
    """The entity explanation prompt (P_exp) as a spacy-llm task.

    lang (str): language of the built-in template, "zh" or "en".
    template (Optional[str]): custom Jinja template (variables: text,
        entities [{text, type}], examples).
    examples (ExamplesConfigType): few-shot examples, each with ``text``,
        ``entities`` ([{text, type}]) and ``answer``.
    spans_key (str): doc.spans key of the target entities (else doc.ents).
    label_names (Optional[Dict[str, str]]): readable names shown for labels,
        e.g. {"PER.NAM": "人名"}.
    max_entities (int): most entities listed in one prompt.
    RETURNS (EntityExplanationTask): the task.
    """
    return EntityExplanationTask(
        lang=lang,
        template=template,
        prompt_examples=read_examples(examples, ExplanationExample),
        spans_key=spans_key,
        label_names=label_names,
        max_entities=max_entities,
    )


@registry.llm_tasks("spacy-knowfree.ExtensionDescription.v1")
def make_extension_description_task(
    lang: str = "zh",
    template: Optional[str] = None,
    examples: ExamplesConfigType = None,
) -> ExtensionDescriptionTask:
    """The extension description prompt (P_ext) as a spacy-llm task.

    lang (str): language of the built-in template, "zh" or "en".
    template (Optional[str]): custom Jinja template (variables: text, examples).
    examples (ExamplesConfigType): few-shot examples with ``text`` and ``answer``.
    RETURNS (ExtensionDescriptionTask): the task.
    """
    return ExtensionDescriptionTask(
        lang=lang, template=template, prompt_examples=read_examples(examples, ExplanationExample)
    )
