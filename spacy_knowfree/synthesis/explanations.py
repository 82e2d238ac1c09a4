"""Enriched explanation synthesis (KnowFREE pipeline 2, section 3.1, eq. 19).

For every source sentence of the fusion samples an LLM writes an enriched
explanation: P_exp (:mod:`spacy_knowfree.llm.tasks.explanation`) for sentences with target
entities, P_ext for sentences without. Then the generated text is

1. cleaned (echoed prompt fields, Markdown, chat prefixes) and filtered as a
   whole: ``empty``, ``too_long``, ``off_language``, ``copy_of_source``;
2. split into sentences (Chinese and English rules), which are filtered
   again: ``too_short``, ``too_long``, ``off_language``, ``copy_of_source``
   (a sentence of the source repeated), ``copy_of_prompt`` (a piece of the
   instruction or of a few-shot answer repeated), ``unfinished`` (last piece without
   end punctuation, e.g. cut at the token limit), ``duplicate``;
3. turned into docs flagged synthetic (``doc.user_data["knowfree_synthetic"]
   = True``), so the ``knowfree`` component weighs them with ``beta`` (eq. 19),
   and annotated like the docs of every augmenter
   (:class:`spacy_knowfree.synthesis.annotation.SyntheticAnnotator`): target
   spans by the *frozen* knowfree pipeline trained on the fusion samples,
   extension spans by the same knowledge pipeline as ``knowfree extend``;
4. written to a DocBin that can be combined with the fusion samples.

Every LLM call goes through an :class:`~spacy_knowfree.llm.runner.LLMRunner`, which uses the backend's
response cache (:mod:`spacy_knowfree.llm.cache`), so an interrupted run
resumes where it stopped and a finished one can be re-run for free. The
peer augmenters in :mod:`spacy_knowfree.synthesis` share the runner, the
reply cleaner, the annotation of synthetic docs, the summary and the writer.
"""

import warnings
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from spacy.language import Language
from spacy.tokens import Doc
from spacy.util import minibatch
from tqdm import tqdm

from ..constants import EXTENSION_SPANS_KEY, GENERATION_KEY
from ..errors import Warnings
from ..llm.runner import LLMRunner
from ..llm.tasks.explanation.task import (
    P_EXP,
    P_EXT,
    EntityExplanationTask,
    ExtensionDescriptionTask,
    make_entity_explanation_task,
    make_extension_description_task,
)
from .annotation import SyntheticAnnotator, annotator_component, flag_synthetic, is_synthetic_doc
from .filters import FilterSettings, filter_generation
from .summary import Summary
from .text import group_sentences


@dataclass
class SynthesisSettings:
    """Settings of :class:`Synthesizer`.

    spans_key (Optional[str]): key of the target spans in the source docs
        (default: the annotator's key); P_exp lists them, and synthetic docs
        get their target spans under the same key.
    extension_key (str): key of the extension spans.
    batch_size (int): source docs per LLM request batch (replies reach the
        cache batch by batch).
    max_doc_chars (int): join consecutive kept sentences into docs of at
        most this many characters (0: one sentence per doc).
    set_ents (bool): also set ``doc.ents`` from non-overlapping target spans.
    limit (int): use only the first N source docs (0: all).
    filters (FilterSettings): the generation filters.
    """

    spans_key: Optional[str] = None
    extension_key: str = EXTENSION_SPANS_KEY
    batch_size: int = 16
    max_doc_chars: int = 0
    set_ents: bool = True
    limit: int = 0
    filters: FilterSettings = field(default_factory=FilterSettings)


class Synthesizer:
    """Enriched explanation synthesis: LLM explanations -> annotated, flagged docs."""

    def __init__(
        self,
        runner: LLMRunner,
        annotator: Language,
        *,
        knowledge: Optional[Language] = None,
        explanation_task: Optional[EntityExplanationTask] = None,
        description_task: Optional[ExtensionDescriptionTask] = None,
        settings: Optional[SynthesisSettings] = None,
    ):
        """runner (LLMRunner): the LLM.
        annotator (Language): frozen knowfree pipeline trained on the fusion samples.
        knowledge (Optional[Language]): extension-span pipeline (None: no extension spans).
        explanation_task / description_task: P_exp / P_ext (default: the
            built-in templates in ``settings.filters.lang``).
        settings (Optional[SynthesisSettings]): the settings.
        """
        self.settings = settings or SynthesisSettings()
        self.settings.filters.check()
        self.runner = runner
        self.annotator = annotator
        self.knowledge = knowledge
        self.knowfree = annotator_component(annotator)
        self.spans_key = self.settings.spans_key or self.knowfree.key
        self.annotation = SyntheticAnnotator(
            annotator,
            knowledge,
            spans_key=self.spans_key,
            extension_key=self.settings.extension_key,
            set_ents=self.settings.set_ents,
            targets_count="target spans",
        )
        lang = self.settings.filters.lang
        self.explanation_task = explanation_task or make_entity_explanation_task(lang=lang, spans_key=self.spans_key)
        self.description_task = description_task or make_extension_description_task(lang=lang)
        self.records: List[Dict[str, Any]] = []

    def _route(self, doc: Doc) -> str:
        return P_EXP if self.explanation_task.entities(doc) else P_EXT

    def generate(
        self, sources: Sequence[Doc], summary: Summary, progress: bool = True
    ) -> List[Tuple[int, str, List[str]]]:
        """Ask the LLM for every source doc and filter the replies.

        RETURNS (List[Tuple[int, str, List[str]]]): (source index, prompt id, kept sentences).
        """
        settings = self.settings
        seen: set = set()
        kept: List[Tuple[int, str, List[str]]] = []
        indexed = list(enumerate(sources))
        bar = tqdm(total=len(indexed), desc="explain", unit="doc", disable=not progress)
        for batch in minibatch(indexed, settings.batch_size):
            routes = [self._route(doc) for _, doc in batch]
            prompts = [
                (self.explanation_task if route == P_EXP else self.description_task).render_prompt(doc)
                for route, (_, doc) in zip(routes, batch)
            ]
            replies = self.runner(prompts)
            for route, (index, doc), prompt, reply in zip(routes, batch, prompts, replies):
                task = self.explanation_task if route == P_EXP else self.description_task
                # on a copy: the source docs are left as they were
                doc = next(iter(task.parse_responses([[doc.copy()]], [[reply]])))
                text = doc.user_data[GENERATION_KEY][-1]["text"]
                result = filter_generation(text, doc.text, settings.filters, seen, prompt=prompt)
                summary.outputs += 1
                summary.add_extra(f"prompts {route}")
                record = {"source": index, "prompt": route, "source_text": doc.text, "reply": text}
                if result.reason is not None:
                    summary.dropped[result.reason] += 1
                    record["status"] = result.reason
                else:
                    n_sent = len(result.sentences) + sum(result.sentence_reasons.values())
                    summary.sentences += n_sent
                    summary.sentences_kept += len(result.sentences)
                    summary.sentence_dropped.update(result.sentence_reasons)
                    if result.sentences:
                        summary.kept += 1
                        kept.append((index, route, result.sentences))
                        record["status"] = "kept"
                    else:
                        summary.dropped["no_sentence_left"] += 1
                        record["status"] = "no_sentence_left"
                    record["sentences"] = result.sentences
                    record["sentence_drops"] = dict(result.sentence_reasons)
                self.records.append(record)
            bar.update(len(batch))
        bar.close()
        return kept

    def synthesize(self, sources: Sequence[Doc], progress: bool = True) -> Tuple[List[Doc], Summary]:
        """Generate, filter, annotate and flag.

        sources (Sequence[Doc]): the fusion samples (synthetic docs among
            them are skipped).
        progress (bool): show progress bars.
        RETURNS (Tuple[List[Doc], Summary]): the synthetic docs and the counts.
        """
        summary = Summary(title="knowfree synthesize")
        settings = self.settings
        pool = [doc for doc in sources if not is_synthetic_doc(doc)]
        if len(pool) < len(sources):
            summary.add_extra("source docs skipped (already synthetic)", len(sources) - len(pool))
        if settings.limit > 0:
            pool = pool[: settings.limit]
        missing = sum(1 for doc in pool if self.spans_key not in doc.spans)
        if pool and missing:
            warnings.warn(Warnings.KW300.format(key=self.spans_key, count=missing, total=len(pool)), stacklevel=2)
        kept = self.generate(pool, summary, progress=progress)
        docs = [
            flag_synthetic(
                self.annotator.make_doc(text), "explanation", source=index, prompt=route, source_text=pool[index].text
            )
            for index, route, sentences in kept
            for text in group_sentences(sentences, settings.max_doc_chars, settings.filters.lang)
        ]
        docs = self.annotation(docs, summary, retokenize=False, progress=progress)
        summary.docs = len(docs)
        summary.llm = dict(self.runner.counts)
        return docs, summary


def synthesize(
    sources: Sequence[Doc],
    annotator: Language,
    runner: LLMRunner,
    *,
    knowledge: Optional[Language] = None,
    settings: Optional[SynthesisSettings] = None,
    progress: bool = False,
) -> Tuple[List[Doc], Summary]:
    """Functional form of :meth:`Synthesizer.synthesize` with the built-in prompts."""
    return Synthesizer(runner, annotator, knowledge=knowledge, settings=settings).synthesize(sources, progress)
