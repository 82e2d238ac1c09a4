"""Self-training: pseudo-labels for unlabeled docs from a frozen knowfree pipeline.

The teacher (a trained knowfree pipeline) predicts target spans with their
probabilities; only spans whose probability is above ``min_confidence`` are
kept, with their scores in ``doc.spans[key].attrs["scores"]``. The docs are
then annotated like every synthetic doc (:mod:`.annotation`: the same target
span writer, the knowledge pipeline's extension spans) and flagged synthetic
(weight ``beta`` in the loss) with their provenance; the unlabeled flag goes,
since the docs now carry target spans. A student trains on gold +
pseudo-labeled docs and may label the text again (rounds).

Decoding keeps spans greedily by probability, so decoding at a lower
threshold never changes which higher-scoring spans are kept: the teacher
decodes at ``min(its threshold, min_confidence)`` and the spans at or below
``min_confidence`` are dropped (and counted per label).
"""

import contextlib
from collections import Counter
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy
from spacy.language import Language
from spacy.tokens import Doc, Span
from tqdm import tqdm
from wasabi import msg

from ..component import KnowFREE, find_knowfree
from ..constants import EXTENSION_SPANS_KEY, UNLABELED_FLAG
from ..docbin_io import read_docbin, write_docbin
from ..errors import Errors
from .annotation import SyntheticAnnotator, flag_synthetic, set_target_spans
from .summary import Summary

PathLike = Union[str, Path]

#: Default ``--min-confidence``: the highest mean F0.5 of the kept spans on the Resume and
#: Weibo dev sets (K=250 teachers; benchmarks/pseudo_label_threshold.py,
#: benchmarks/results/pseudo_label_threshold.md).
DEFAULT_MIN_CONFIDENCE = 0.9
#: ``method`` in the provenance of pseudo-labeled docs.
PSEUDO_LABEL_METHOD = "pseudo_label"


def check_min_confidence(value: Any) -> float:
    """``value`` as a probability in (0, 1); KF340 otherwise."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if isinstance(value, bool) or not 0.0 < number < 1.0:  # NaN fails the comparison too
        raise ValueError(Errors.KF340.format(value=value, default=DEFAULT_MIN_CONFIDENCE))
    return number


def teacher_component(model: Language, path: Any = "(given pipeline)") -> KnowFREE:
    """The (first) knowfree component of the teacher pipeline; KF341 if it has none."""
    knowfree = find_knowfree(model)
    if knowfree is None:
        raise ValueError(Errors.KF341.format(path=path, pipes=model.pipe_names))
    return knowfree


@contextlib.contextmanager
def decoding_threshold(knowfree: KnowFREE, threshold: float) -> Iterator[None]:
    """Decode with ``threshold`` inside the block, then restore the component's own."""
    saved = knowfree.cfg["threshold"]
    knowfree.cfg["threshold"] = float(threshold)
    try:
        yield
    finally:
        knowfree.cfg["threshold"] = saved


def scored_spans(doc: Doc, key: str) -> List[Tuple[Span, float]]:
    """The spans of ``doc.spans[key]`` with their probabilities (``attrs["scores"]``)."""
    if key not in doc.spans:
        return []
    group = doc.spans[key]
    scores = group.attrs.get("scores")
    if scores is None or len(scores) != len(group):
        raise ValueError(
            f"doc.spans['{key}'] carries no per-span scores (attrs['scores']): "
            "it was not written by the knowfree component."
        )
    return [(span, float(score)) for span, score in zip(group, scores)]


@dataclass
class PseudoLabelStats:
    """What a pseudo-labeling run kept and dropped.

    docs_in: input docs; docs: docs written; docs_without_spans: written docs
    without a kept span; docs_dropped_empty: docs left out for having none
    (``drop_empty``); docs_with_dropped: docs that lost a low-confidence span;
    replaced_targets: input docs whose own target spans were replaced;
    unlabeled_cleared: docs that lost the unlabeled flag; kept / dropped:
    target spans per label above / at or below ``min_confidence``;
    extension_spans: extension spans on the written docs.
    """

    min_confidence: float
    model_threshold: float
    docs_in: int = 0
    docs: int = 0
    docs_without_spans: int = 0
    docs_dropped_empty: int = 0
    docs_with_dropped: int = 0
    replaced_targets: int = 0
    unlabeled_cleared: int = 0
    kept: Counter = field(default_factory=Counter)
    dropped: Counter = field(default_factory=Counter)
    extension_spans: int = 0

    def rows(self) -> List[Tuple[str, Any]]:
        """(name, count) rows of the overview table."""
        rows: List[Tuple[str, Any]] = [
            ("min confidence (teacher threshold)", f"{self.min_confidence:g} ({self.model_threshold:g})"),
            ("input docs", self.docs_in),
            ("pseudo-labeled docs written", self.docs),
            ("  without any kept span", self.docs_without_spans),
            ("  with a dropped low-confidence span", self.docs_with_dropped),
        ]
        if self.docs_dropped_empty:
            rows.append(("docs left out (no kept span)", self.docs_dropped_empty))
        rows += [
            ("target spans kept", sum(self.kept.values())),
            ("target spans dropped (low confidence)", sum(self.dropped.values())),
            ("input docs whose target spans were replaced", self.replaced_targets),
            ("unlabeled flags cleared", self.unlabeled_cleared),
            ("extension spans", self.extension_spans),
        ]
        return rows

    def label_rows(self) -> List[Tuple[str, int, int]]:
        """(label, kept, dropped) rows, labels by kept count."""
        labels = sorted(set(self.kept) | set(self.dropped), key=lambda label: (-self.kept[label], label))
        return [(label, self.kept[label], self.dropped[label]) for label in labels]

    def to_dict(self) -> Dict[str, Any]:
        """The counts as JSON-serializable data (``--summary``)."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        return {**data, "kept": dict(self.kept), "dropped": dict(self.dropped)}

    def print(self) -> None:
        """Print the overview and the per-label table."""
        msg.table(self.rows(), header=("pseudo-label", "count"), divider=True, aligns=("l", "r"), max_col=60)
        if self.kept or self.dropped:
            msg.table(self.label_rows(), header=("label", "kept", "dropped"), divider=True, aligns=("l", "r", "r"))


class PseudoLabeler:
    """Pseudo-labels docs with a frozen knowfree pipeline (the teacher)."""

    def __init__(
        self,
        model: Language,
        *,
        min_confidence: float = DEFAULT_MIN_CONFIDENCE,
        knowledge: Optional[Language] = None,
        spans_key: Optional[str] = None,
        extension_key: str = EXTENSION_SPANS_KEY,
        set_ents: bool = True,
        drop_empty: bool = False,
        model_path: Any = "(given pipeline)",
        round_: int = 1,
        batch_size: int = 64,
    ):
        """model (Language): the teacher, a pipeline with a knowfree component.
        min_confidence (float): keep target spans whose probability is above it.
        knowledge (Optional[Language]): extension-span pipeline (None: no extension spans).
        spans_key (Optional[str]): key of the written target spans (default: the teacher's).
        extension_key (str): key of the extension spans.
        set_ents (bool): also set ``doc.ents`` from non-overlapping kept spans.
        drop_empty (bool): leave out docs without a kept span.
        model_path (Any): where the teacher came from (provenance).
        round_ (int): self-training round (provenance).
        batch_size (int): docs per teacher batch.
        """
        self.model = model
        self.knowfree = teacher_component(model, model_path)
        self.min_confidence = check_min_confidence(min_confidence)
        self.knowledge = knowledge
        self.spans_key = spans_key or self.knowfree.key
        self.extension_key = extension_key
        if self.spans_key == extension_key:
            raise ValueError(
                Errors.KF343.format(
                    arg="--spans-key",
                    value=spans_key,
                    hint=f"'{extension_key}' holds the extension spans: name another key for the target spans.",
                )
            )
        for arg, value in (("--round", round_), ("--batch-size", batch_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(Errors.KF343.format(arg=arg, value=value, hint="Give a positive whole number."))
        self.set_ents = set_ents
        self.drop_empty = drop_empty
        self.model_path = str(model_path)
        self.round = int(round_)
        self.batch_size = int(batch_size)

    @property
    def model_threshold(self) -> float:
        """The teacher's own decision threshold."""
        return float(self.knowfree.cfg["threshold"])

    def provenance(self) -> Dict[str, Any]:
        """What :func:`flag_synthetic` records on every pseudo-labeled doc."""
        return {
            "model": self.model_path,
            "min_confidence": self.min_confidence,
            "round": self.round,
            "spans_key": self.spans_key,
        }

    def __call__(
        self,
        docs: Sequence[Doc],
        *,
        retokenize: bool = False,
        progress: bool = False,
    ) -> Tuple[List[Doc], PseudoLabelStats]:
        """Pseudo-label ``docs``.

        docs (Sequence[Doc]): unlabeled docs (in the teacher's vocab).
        retokenize (bool): make the docs again with the teacher's tokenizer (user
            data kept); False: use their tokens as they are.
        progress (bool): show progress bars.
        RETURNS (Tuple[List[Doc], PseudoLabelStats]): the flagged docs and the counts.
        """
        stats = PseudoLabelStats(min_confidence=self.min_confidence, model_threshold=self.model_threshold)
        docs = list(docs)
        stats.docs_in = len(docs)
        if retokenize:
            fresh = [self.model.make_doc(doc.text) for doc in docs]
            for new, old in zip(fresh, docs):
                new.user_data.update(old.user_data)
            docs = fresh
        stats.replaced_targets = sum(1 for doc in docs if len(doc.spans.get(self.spans_key, ())))
        out: List[Doc] = []
        decode_at = min(self.model_threshold, self.min_confidence)
        with decoding_threshold(self.knowfree, decode_at):
            stream = self.model.pipe(docs, batch_size=self.batch_size)
            for doc in tqdm(
                stream, total=len(docs), desc="pseudo-label", unit="doc", disable=not progress, leave=False
            ):
                if self._label(doc, stats):
                    out.append(doc)
        if self.knowledge is not None and out:
            summary = Summary(title="pseudo-label")
            out = SyntheticAnnotator(None, self.knowledge, extension_key=self.extension_key)(
                out, summary, retokenize=False, progress=progress
            )
            stats.extension_spans = summary.extra.get("extension spans", 0)
        stats.docs = len(out)
        return out, stats

    def _label(self, doc: Doc, stats: PseudoLabelStats) -> bool:
        """Keep the confident spans of a predicted doc and flag it; False: leave it out."""
        spans = sorted(scored_spans(doc, self.knowfree.key), key=lambda pair: (pair[0].start, pair[0].end))
        kept = [(span, score) for span, score in spans if score > self.min_confidence]
        dropped = [span for span, score in spans if score <= self.min_confidence]
        stats.kept.update(span.label_ for span, _ in kept)
        stats.dropped.update(span.label_ for span in dropped)
        stats.docs_with_dropped += bool(dropped)
        if not kept:
            if self.drop_empty:
                stats.docs_dropped_empty += 1
                return False
            stats.docs_without_spans += 1
        if self.spans_key != self.knowfree.key:
            del doc.spans[self.knowfree.key]
        doc.ents = []  # the component may have set them from every decoded span
        set_target_spans(doc, self.spans_key, [span for span, _ in kept], set_ents=self.set_ents)
        doc.spans[self.spans_key].attrs["scores"] = numpy.asarray([s for _, s in kept], dtype="float32")
        if doc.user_data.pop(UNLABELED_FLAG, None) is not None:
            stats.unlabeled_cleared += 1
        flag_synthetic(doc, PSEUDO_LABEL_METHOD, **self.provenance())
        return True


def pseudo_label(
    model_path: PathLike,
    input_path: PathLike,
    output_path: PathLike,
    *,
    limit: int = 0,
    retokenize: bool = False,
    progress: bool = False,
    **settings: Any,
) -> PseudoLabelStats:
    """Read unlabeled docs, pseudo-label them with the pipeline at ``model_path``
    and write them to ``output_path`` (``knowfree pseudo-label`` without the printing).

    model_path (PathLike): the teacher pipeline (e.g. training/model-best).
    input_path (PathLike): a .spacy DocBin of unlabeled docs.
    output_path (PathLike): the .spacy DocBin to write.
    limit (int): use only the first N docs (0: all).
    retokenize (bool): make the docs again with the teacher's tokenizer.
    progress (bool): show progress bars.
    settings: further :class:`PseudoLabeler` arguments (``min_confidence``,
        ``knowledge``, ``spans_key``, ``round_`` ...).
    RETURNS (PseudoLabelStats): the counts.
    """
    import spacy

    if limit < 0:
        raise ValueError(Errors.KF343.format(arg="--limit", value=limit, hint="Use 0 for all docs or a positive N."))
    check_min_confidence(settings.get("min_confidence", DEFAULT_MIN_CONFIDENCE))  # before loading anything
    model = spacy.load(model_path)
    labeler = PseudoLabeler(model, model_path=model_path, **settings)
    docs = read_docbin(input_path, model.vocab, allow_empty=True)
    if not docs:
        raise ValueError(Errors.KF342.format(path=input_path))
    if limit:
        docs = docs[:limit]
    out, stats = labeler(docs, retokenize=retokenize, progress=progress)
    write_docbin(out, output_path)
    return stats
