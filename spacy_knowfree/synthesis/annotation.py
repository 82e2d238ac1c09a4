"""The annotation of synthetic docs, whichever method wrote them: target spans
from the *frozen* knowfree pipeline trained on the fusion samples, extension
spans from the knowledge pipeline of ``knowfree extend``, and the synthetic
flag (weight ``beta`` in the knowfree loss, eq. 19) with the doc's provenance.
"""

from pathlib import Path
from typing import Any, Iterable, List, Optional, Sequence, Tuple, Union

import spacy
from spacy.language import Language
from spacy.tokens import Doc, Span
from tqdm import tqdm

from ..component import KnowFREE, find_knowfree
from ..constants import EXTENSION_SPANS_KEY, PROVENANCE_KEY, SYNTHETIC_FLAG
from ..errors import Errors
from .summary import Summary

PathLike = Union[str, Path]


def flag_synthetic(doc: Doc, method: str, **provenance: Any) -> Doc:
    """Mark ``doc`` as synthetic (weighted ``beta`` in the knowfree loss) and
    record where it came from in ``doc.user_data["knowfree_synthesis"]``."""
    doc.user_data[SYNTHETIC_FLAG] = True
    doc.user_data[PROVENANCE_KEY] = {"method": method, **provenance}
    return doc


def is_synthetic_doc(doc: Doc) -> bool:
    """Whether ``doc`` is flagged synthetic."""
    return bool(doc.user_data.get(SYNTHETIC_FLAG))


def load_annotator(path: PathLike) -> Tuple[Language, KnowFREE]:
    """Load the frozen knowfree pipeline trained on the fusion samples.

    RETURNS (Tuple[Language, KnowFREE]): the pipeline and its (first) knowfree component.
    """
    nlp = spacy.load(path)
    return nlp, annotator_component(nlp, path)


def annotator_component(annotator: Language, path: Any = "(given pipeline)") -> KnowFREE:
    """The (first) knowfree component of an annotator pipeline; KF300 if it has none."""
    knowfree = find_knowfree(annotator)
    if knowfree is None:
        raise ValueError(Errors.KF300.format(path=path, pipes=annotator.pipe_names))
    return knowfree


def _spans_overlap(spans: Sequence[Span]) -> bool:
    last = -1
    for span in sorted(spans, key=lambda s: (s.start, s.end)):
        if span.start < last:
            return True
        last = max(last, span.end)
    return False


def set_target_spans(doc: Doc, key: str, spans: Iterable[Span], set_ents: bool = True) -> None:
    """Write target spans (without scores) to ``doc.spans[key]``, and to
    ``doc.ents`` when asked and they do not overlap."""
    spans = sorted(spans, key=lambda s: (s.start, s.end))
    doc.spans[key] = [Span(doc, s.start, s.end, label=s.label_) for s in spans]
    if set_ents and not _spans_overlap(spans):
        doc.ents = list(doc.spans[key])


def annotate_targets(
    docs: Sequence[Doc],
    annotator: Language,
    knowfree: KnowFREE,
    *,
    spans_key: Optional[str] = None,
    set_ents: bool = True,
    batch_size: int = 64,
    progress: bool = False,
) -> List[Doc]:
    """Target spans from the frozen annotator (its knowfree component's key,
    copied to ``spans_key`` if that differs)."""
    out = []
    stream = annotator.pipe(docs, batch_size=batch_size)
    for doc in tqdm(stream, total=len(docs), desc="annotate", unit="doc", disable=not progress, leave=False):
        spans = list(doc.spans[knowfree.key]) if knowfree.key in doc.spans else []
        target_key = spans_key or knowfree.key
        if target_key != knowfree.key and knowfree.key in doc.spans:
            del doc.spans[knowfree.key]
        set_target_spans(doc, target_key, spans, set_ents=set_ents)
        out.append(doc)
    return out


def add_extension_spans(
    docs: Sequence[Doc],
    knowledge: Language,
    *,
    extension_key: str = EXTENSION_SPANS_KEY,
    batch_size: int = 32,
    progress: bool = False,
) -> List[Doc]:
    """Extension spans from the knowledge pipeline of ``knowfree extend``;
    every doc gets a (possibly empty) ``doc.spans[extension_key]`` group."""
    out = []
    stream = knowledge.pipe(docs, batch_size=batch_size)
    for doc in tqdm(stream, total=len(docs), desc="extension spans", unit="doc", disable=not progress, leave=False):
        if extension_key not in doc.spans:
            doc.spans[extension_key] = []
        out.append(doc)
    return out


class SyntheticAnnotator:
    """Annotates synthetic docs the same way for every method (the synthesizer
    and each augmenter): the frozen annotator's target spans, on docs made
    with its tokenizer (made again where needed, user data and the synthetic
    flag kept), then the knowledge pipeline's extension spans."""

    def __init__(
        self,
        annotator: Optional[Language] = None,
        knowledge: Optional[Language] = None,
        *,
        spans_key: Optional[str] = None,
        extension_key: str = EXTENSION_SPANS_KEY,
        set_ents: bool = True,
        targets_count: str = "target spans re-annotated by the annotator",
    ):
        """annotator (Optional[Language]): frozen knowfree pipeline (None: keep the docs' target spans).
        knowledge (Optional[Language]): extension-span pipeline (None: no extension spans).
        spans_key (Optional[str]): key of the target spans (default: the annotator's).
        extension_key (str): key of the extension spans.
        set_ents (bool): also set ``doc.ents`` from non-overlapping target spans.
        targets_count (str): name of the summary count of the annotator's spans.
        """
        self.annotator = annotator
        self.knowfree = annotator_component(annotator) if annotator is not None else None
        self.knowledge = knowledge
        self.spans_key = spans_key or (self.knowfree.key if self.knowfree is not None else None)
        self.extension_key = extension_key
        self.set_ents = set_ents
        self.targets_count = targets_count

    def __call__(
        self,
        docs: Sequence[Doc],
        summary: Summary,
        *,
        retokenize: bool = True,
        progress: bool = False,
    ) -> List[Doc]:
        """Annotate ``docs`` and add the span counts to ``summary``.

        docs (Sequence[Doc]): the synthetic docs.
        summary (Summary): the run's counts.
        retokenize (bool): make the docs again with the annotator's tokenizer
            (False: they were made by ``annotator.make_doc`` and hold no spans).
        progress (bool): show progress bars.
        RETURNS (List[Doc]): the annotated docs (new ones where re-tokenized).
        """
        out = list(docs)
        if self.annotator is not None and self.knowfree is not None:
            if retokenize:
                fresh = [self.annotator.make_doc(doc.text) for doc in out]
                for new, old in zip(fresh, out):
                    new.user_data.update(old.user_data)
                out = fresh
            out = annotate_targets(
                out, self.annotator, self.knowfree, spans_key=self.spans_key, set_ents=self.set_ents, progress=progress
            )
            key = self.spans_key or self.knowfree.key
            summary.add_extra(self.targets_count, sum(len(doc.spans[key]) for doc in out))
        if self.knowledge is not None:
            out = add_extension_spans(out, self.knowledge, extension_key=self.extension_key, progress=progress)
            summary.add_extra("extension spans", sum(len(doc.spans[self.extension_key]) for doc in out))
        return out
