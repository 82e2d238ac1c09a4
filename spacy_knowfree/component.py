"""The ``knowfree`` trainable pipeline component (factory, loss, decoding)."""

import warnings
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union, cast

import numpy
import srsly
from spacy import util
from spacy.language import Language
from spacy.pipeline import TrainablePipe
from spacy.tokens import Doc, Span, SpanGroup
from spacy.training import Example, validate_examples, validate_get_examples
from spacy.vocab import Vocab
from thinc.api import Config, Model, Optimizer
from thinc.types import Floats3d

from .constants import EXTENSION_SPANS_KEY, SYNTHETIC_FLAG, UNLABELED_FLAG
from .decoding import decode_grid, sigmoid, valid_cells
from .errors import Errors, Warnings
from .layers.crf_tags import check_crf_tags
from .layers.model import load_model_bytes, predict_logits
from .layers.span_grid import auto_span_width, configure_encoder
from .scorer import score_weights_for

# Inference on docs longer than this many tokens runs window by window, with
# this much context (far more than a CNN tok2vec's receptive field) each side.
LONG_DOC_ROWS = 2048
LONG_DOC_CONTEXT = 64

DEFAULT_KNOWFREE_MODEL = """
[model]
@architectures = "spacy-knowfree.KnowFREE.v1"
hidden_width = 200
grid_width = 200
n_biaffine_heads = 4
n_attention_heads = 10
attention_window = 3
dropout = 0.4
batch_rows = 256

[model.tok2vec]
@architectures = "spacy.Tok2Vec.v2"

[model.tok2vec.embed]
@architectures = "spacy.MultiHashEmbed.v2"
width = 128
attrs = ["ORTH", "SHAPE"]
rows = [8000, 1000]
include_static_vectors = false

[model.tok2vec.encode]
@architectures = "spacy.MaxoutWindowEncoder.v2"
width = 128
window_size = 1
maxout_pieces = 3
depth = 4
"""
DEFAULT_MODEL = Config().from_str(DEFAULT_KNOWFREE_MODEL)["model"]


@Language.factory(
    "knowfree",
    assigns=["doc.spans"],
    default_config={
        "model": DEFAULT_MODEL,
        "spans_key": "sc",
        "extension_spans_key": EXTENSION_SPANS_KEY,
        "threshold": 0.5,
        "alpha": 0.13,
        "beta": 1.0,
        "nested": False,
        "max_span_width": "auto",
        "set_ents": False,
        "head_lr_scale": 1.0,
        "int8": False,
        "scorer": {"@scorers": "spacy-knowfree.knowfree_scorer.v1"},
    },
    default_score_weights=score_weights_for("sc"),  # type: ignore[arg-type]
)
def make_knowfree(
    nlp: Language,
    name: str,
    model: Model[List[Doc], List[Floats3d]],
    spans_key: str,
    extension_spans_key: str,
    threshold: float,
    alpha: float,
    beta: float,
    nested: bool,
    max_span_width: Union[int, str],
    set_ents: bool,
    head_lr_scale: float,
    int8: bool,
    scorer: Optional[Callable],
) -> "KnowFREE":
    """Create a KnowFREE span labeler.

    model (Model[List[Doc], List[Floats3d]]): the span model
        (``spacy-knowfree.KnowFREE.v1``).
    spans_key (str): key of ``doc.spans`` holding the target spans (read for
        training, written at inference).
    extension_spans_key (str): key of ``doc.spans`` holding the extension spans
        (LLM or lexicon knowledge); only read for training.
    threshold (float): minimum probability of a predicted span.
    alpha (float): weight of the extension-label loss terms (eq. 18).
    beta (float): weight of synthetic documents, flagged with
        ``doc.user_data["knowfree_synthetic"] = True`` (eq. 19).
    nested (bool): keep nested (never crossing) spans; else non-overlapping.
    max_span_width (Union[int, str]): longest span, in tokens; the span grid is
        banded to it. "auto" (the default) sets it at ``initialize`` from the
        training data (:func:`auto_span_width`); the number is then saved in
        the component's ``cfg``.
    set_ents (bool): also write the spans to ``doc.ents`` (needs nested=False).
    head_lr_scale (float): learning-rate multiplier of the span head relative to
        the optimizer's rate, e.g. 50 with a transformer at 2e-5 gives the
        paper's 1e-3 for the non-encoder part.
    int8 (bool): at inference, run the span head's per-cell Q/K/V projection
        in int8 (torch dynamic quantization, CPU only; ``knowfree quantize``
        sets it).
        Training and the saved weights stay float32.
    scorer (Optional[Callable]): the scoring method.
    """
    return KnowFREE(
        nlp.vocab,
        model,
        name,
        spans_key=spans_key,
        extension_spans_key=extension_spans_key,
        threshold=threshold,
        alpha=alpha,
        beta=beta,
        nested=nested,
        max_span_width=max_span_width,
        set_ents=set_ents,
        head_lr_scale=head_lr_scale,
        int8=int8,
        scorer=scorer,
    )


class KnowFREE(TrainablePipe):
    """Span labeler trained on target plus down-weighted extension labels."""

    def __init__(
        self,
        vocab: Vocab,
        model: Model[List[Doc], List[Floats3d]],
        name: str = "knowfree",
        *,
        spans_key: str = "sc",
        extension_spans_key: str = EXTENSION_SPANS_KEY,
        threshold: float = 0.5,
        alpha: float = 0.13,
        beta: float = 1.0,
        nested: bool = False,
        max_span_width: Union[int, str] = "auto",
        set_ents: bool = False,
        head_lr_scale: float = 1.0,
        int8: bool = False,
        scorer: Optional[Callable] = None,
    ) -> None:
        self.vocab = vocab
        self.model = model
        self.name = name
        self.scorer = scorer
        self.cfg: Dict[str, Any] = {
            "labels": [],
            "extension_labels": [],
            "spans_key": spans_key,
            "extension_spans_key": extension_spans_key,
            "threshold": threshold,
            "alpha": alpha,
            "beta": beta,
            "nested": nested,
            "max_span_width": max_span_width,
            "set_ents": set_ents,
            "head_lr_scale": head_lr_scale,
            "int8": int8,
        }
        # "auto": the width is learned from the data at every initialize
        self.auto_width = max_span_width == "auto"
        self._validate_cfg()
        model_width = self._head.maybe_get_dim("nW")
        if model_width is not None and model_width != max_span_width:
            raise ValueError(Errors.KF312.format(name=self.name, model=model_width, component=max_span_width))

    def _validate_cfg(self) -> None:
        cfg = self.cfg
        width = cfg["max_span_width"]
        checks = [
            ("threshold", 0.0 <= cfg["threshold"] < 1.0, "Use a probability in [0, 1)."),
            ("alpha", cfg["alpha"] >= 0.0, "Use a non-negative loss weight (paper: 0.13)."),
            ("beta", cfg["beta"] >= 0.0, "Use a non-negative loss weight (paper: 1.0)."),
            (
                "max_span_width",
                width == "auto" or (isinstance(width, int) and not isinstance(width, bool) and width >= 1),
                "Use the longest span length in tokens, e.g. 32 for Chinese characters, "
                'or "auto" to take it from the training data.',
            ),
            (
                "set_ents",
                not (cfg["set_ents"] and cfg["nested"]),
                "doc.ents cannot hold nested spans: set nested = false to use set_ents.",
            ),
            ("head_lr_scale", cfg["head_lr_scale"] > 0.0, "Use a positive multiplier."),
            (
                "extension_spans_key",
                cfg["extension_spans_key"] != cfg["spans_key"],
                "Extension spans need their own doc.spans key.",
            ),
        ]
        for arg, ok, hint in checks:
            if not ok:
                raise ValueError(Errors.KF004.format(arg=arg, name=self.name, value=self.cfg[arg], hint=hint))

    # ------------------------------------------------------------------ labels

    @property
    def _head(self) -> Model:
        return self.model.get_ref("head")

    @property
    def max_span_width(self) -> int:
        """W, the longest span in tokens (with "auto": set at ``initialize``)."""
        width = self.cfg["max_span_width"]
        if width == "auto":
            raise ValueError(Errors.KF313.format(name=self.name))
        return int(width)

    @property
    def key(self) -> str:
        """Key of ``doc.spans`` the target spans are read from and written to."""
        return str(self.cfg["spans_key"])

    @property
    def extension_key(self) -> str:
        return str(self.cfg["extension_spans_key"])

    @property
    def labels(self) -> Tuple[str, ...]:
        """The target labels (predicted at inference)."""
        return tuple(self.cfg["labels"])

    @property
    def extension_labels(self) -> Tuple[str, ...]:
        """The extension labels (trained with weight alpha, never predicted)."""
        return tuple(self.cfg["extension_labels"])

    @property
    def label_data(self) -> Dict[str, List[str]]:
        """Both label sets, as written by ``spacy init labels``; ``initialize``
        takes this dict as its ``labels`` setting."""
        return {"labels": list(self.labels), "extension_labels": list(self.extension_labels)}

    def add_label(self, label: str) -> int:
        """Add a target label. RETURNS (int): 1 if added, 0 if already present."""
        return self._add_label(label, "labels")

    def add_extension_label(self, label: str) -> int:
        """Add an extension label. RETURNS (int): 1 if added, 0 if already present."""
        return self._add_label(label, "extension_labels")

    def _add_label(self, label: str, kind: str, *, initializing: bool = False) -> int:
        if not isinstance(label, str) or not label:
            raise ValueError(
                Errors.KF004.format(arg=kind, name=self.name, value=label, hint="Labels are non-empty strings.")
            )
        if label in self.cfg[kind]:
            return 0
        other = "extension_labels" if kind == "labels" else "labels"
        if label in self.cfg[other]:
            raise ValueError(Errors.KF005.format(label=label, name=self.name))
        if self._head.has_dim("nO") and not initializing:
            raise ValueError(Errors.KF003.format(label=label, name=self.name, n=self._head.get_dim("nO")))
        self.cfg[kind].append(label)
        self.vocab.strings.add(label)
        return 1

    # -------------------------------------------------------------- training

    def initialize(
        self,
        get_examples: Callable[[], Iterable[Example]],
        *,
        nlp: Optional[Language] = None,
        labels: Optional[Sequence[str]] = None,
        extension_labels: Optional[Sequence[str]] = None,
    ) -> None:
        """Take labels (and, with ``max_span_width = "auto"``, the band width)
        from the settings or the examples and size the model.

        get_examples (Callable[[], Iterable[Example]]): the training examples.
        nlp (Language): the pipeline, used to check that the training score
            weights name ``spans_key`` (KW310).
        labels (Optional[Sequence[str]]): target labels, e.g. from
            ``[initialize.components.knowfree.labels]``.
        extension_labels (Optional[Sequence[str]]): extension labels.
        """
        validate_get_examples(get_examples, "KnowFREE.initialize")
        if isinstance(labels, dict):  # the label_data of `spacy init labels`
            labels, extension_labels = labels.get("labels"), labels.get("extension_labels")
        lengths: Dict[str, List[int]] = {self.key: [], self.extension_key: []}
        found: Dict[str, Dict[str, None]] = {self.key: {}, self.extension_key: {}}
        without_extension = 0
        doc_sample: List[Doc] = []
        for eg in get_examples():
            if len(doc_sample) < 10:
                doc_sample.append(eg.x)
            without_extension += self.extension_key not in eg.reference.spans
            for key in (self.key, self.extension_key):
                for span in eg.reference.spans.get(key, []):
                    found[key][span.label_] = None
                    lengths[key].append(len(span))
        # Initializing starts afresh: the labels are replaced, not extended.
        self.cfg["labels"] = []
        self.cfg["extension_labels"] = []
        for label in labels if labels is not None else found[self.key]:
            self._add_label(label, "labels", initializing=True)
        for label in extension_labels if extension_labels is not None else found[self.extension_key]:
            self._add_label(label, "extension_labels", initializing=True)
        if not self.labels:
            raise ValueError(Errors.KF002.format(name=self.name, key=self.key))
        if self.auto_width:
            self.cfg["max_span_width"] = auto_span_width(lengths[self.key])
        width = self.max_span_width
        for key, key_lengths in lengths.items():
            too_long = [n for n in key_lengths if n > width]
            if too_long:
                warnings.warn(
                    Warnings.KW001.format(
                        count=len(too_long), key=key, width=width, longest=max(too_long), name=self.name
                    ),
                    stacklevel=2,
                )
        if self.extension_labels and without_extension:
            warnings.warn(Warnings.KW002.format(count=without_extension, key=self.extension_key), stacklevel=2)
        self._size_head()
        self.model.initialize(X=doc_sample)
        if nlp is not None:
            self._check_score_weights(nlp)

    def _size_head(self) -> None:
        """Give the model the band width and output width of ``cfg`` (also
        before deserializing: the lazily sized parts must exist for weights to load)."""
        head = self._head
        width = self.max_span_width
        if head.maybe_get_dim("nW") != width:
            head.set_dim("nW", width, force=True)  # the head has no params of its own
        configure_encoder(head)
        self.model.attrs["resize_output"](self.model, len(self.labels) + len(self.extension_labels))

    def _check_score_weights(self, nlp: Language) -> None:
        """Warn when the training score weights leave out ``spans_{key}_f``.

        The factory's ``default_score_weights`` are written for the default
        key "sc"; with another key the weights must be set in the config, or
        training would select checkpoints on a score of 0 (spaCy issue #13090).
        """
        weights = nlp.config["training"].get("score_weights", {})
        if self.name in nlp.component_names and not weights.get(f"spans_{self.key}_f"):
            warnings.warn(Warnings.KW310.format(name=self.name, key=self.key, weights=dict(weights)), stacklevel=3)

    def get_loss(self, examples: Iterable[Example], scores: List[Floats3d]) -> Tuple[float, List[Floats3d]]:
        """Weighted binary cross-entropy over the span grid (eq. 18-19).

        Target columns weigh 1, extension columns ``alpha``; documents flagged
        synthetic weigh ``beta``. Cells past the end of a document are masked,
        and so are the extension columns of documents without
        ``doc.spans[extension_spans_key]`` and the target columns of documents
        flagged unlabeled (``doc.user_data["knowfree_unlabeled"]``: raw text
        whose only annotation is its knowledge). The loss is summed over cells
        and averaged over documents; the target columns are averaged over the
        labelled documents of the batch, so unlabeled text in a batch does not
        dilute the gold signal (without unlabeled docs both are the same).
        RETURNS (Tuple[float, List[Floats3d]]): the loss and its gradient.
        """
        examples = list(examples)
        validate_examples(examples, "KnowFREE.get_loss")
        check_crf_tags(self.model, [eg.predicted for eg in examples], self.name)
        ops = self.model.ops
        n_docs = max(len(examples), 1)
        total = 0.0
        d_scores = []
        n_out = len(self.labels) + len(self.extension_labels)
        per_column = numpy.full(n_out, n_docs, dtype="float32")  # the average's denominator
        per_column[: len(self.labels)] = max(sum(1 for eg in examples if not is_unlabeled(eg)), 1)
        for eg, logits in zip(examples, scores):
            logits = ops.to_numpy(logits)
            if logits.shape[-1] != n_out:
                raise ValueError(Errors.KF006.format(got=logits.shape[-1], expected=n_out, name=self.name))
            truth, weights = self._grid_targets(eg, logits.shape)
            # binary cross-entropy with logits, stable form
            loss = numpy.maximum(logits, 0) - logits * truth + numpy.log1p(numpy.exp(-numpy.abs(logits)))
            total += float((loss * weights / per_column).sum())
            probs = sigmoid(logits)
            grad = (probs - truth) * weights / per_column
            d_scores.append(ops.asarray3f(grad.astype("float32")))
        return total, d_scores

    def _grid_targets(self, eg: Example, shape: Tuple[int, int, int]) -> Tuple[numpy.ndarray, numpy.ndarray]:
        """Gold grid and per-cell loss weights of one example."""
        length, width, n_out = shape
        n_tgt = len(self.labels)
        truth = numpy.zeros(shape, dtype="float32")
        column_weights = numpy.ones(n_out, dtype="float32")
        column_weights[n_tgt:] = self.cfg["alpha"]
        if self.extension_key not in eg.reference.spans:
            column_weights[n_tgt:] = 0.0
        if is_unlabeled(eg):
            column_weights[:n_tgt] = 0.0
        doc_weight = self.cfg["beta"] if is_synthetic(eg) else 1.0
        weights = (
            valid_cells(length, width)[..., None].astype("float32") * column_weights.reshape(1, 1, -1) * doc_weight
        )
        for key, labels, offset in (
            (self.key, self.labels, 0),
            (self.extension_key, self.extension_labels, n_tgt),
        ):
            if key not in eg.reference.spans:
                continue
            label_index = {label: i for i, label in enumerate(labels)}
            kind = "labels" if offset == 0 else "extension_labels"
            for span in eg.get_aligned_spans_y2x(eg.reference.spans[key], allow_overlap=True):
                if span.label_ not in label_index:
                    raise ValueError(
                        Errors.KF001.format(label=span.label_, key=key, name=self.name, kind=kind, labels=list(labels))
                    )
                size = span.end - span.start
                if 0 < size <= width:  # longer spans were reported at initialize
                    truth[span.start, size - 1, offset + label_index[span.label_]] = 1.0
        return truth, weights

    def finish_update(self, sgd: Optimizer) -> None:
        """Update the weights; the span head's learning rate is scaled by
        ``head_lr_scale`` (the paper trains the encoder and the rest at
        different rates)."""
        scale = float(self.cfg["head_lr_scale"])
        if scale == 1.0:
            self.model.finish_update(sgd)
            return
        self.model.get_ref("tok2vec").finish_update(sgd)
        scaled = cast(Optimizer, _ScaledOptimizer(sgd, scale))
        self._head.finish_update(scaled)
        if self.model.has_ref("ngram_evidence"):  # not the encoder: the head's rate
            self.model.get_ref("ngram_evidence").finish_update(scaled)

    # ------------------------------------------------------------- inference

    def predict(self, docs: Iterable[Doc]) -> List[Floats3d]:
        """Target-label logits (n_tokens, max_span_width, n_labels) per doc.

        Docs longer than ``LONG_DOC_ROWS`` tokens are scored window by window
        (each with ``LONG_DOC_CONTEXT`` tokens of context on both sides plus
        the band), so the tok2vec, not only the span head, runs in bounded
        memory. Not for listener tok2vecs, whose vectors come from the
        upstream component over the whole doc anyway.
        """
        return self._predict(docs, len(self.labels))

    def predict_with_extensions(self, docs: Iterable[Doc]) -> List[Floats3d]:
        """Logits of every column, target labels then extension labels:
        (n_tokens, max_span_width, n_labels + n_extension_labels) per doc.

        Inference never needs the extension columns; this is for analysing
        what the model learned from them (``knowfree analyze heatmap``).
        """
        return self._predict(docs, len(self.labels) + len(self.extension_labels))

    def _predict(self, docs: Iterable[Doc], n_columns: int) -> List[Floats3d]:
        docs = list(docs)
        int8 = bool(self.cfg.get("int8"))  # pipelines saved before int8 lack it
        if not docs:
            return []
        check_crf_tags(self.model, docs, self.name)
        if self._uses_listener or all(len(doc) <= LONG_DOC_ROWS for doc in docs):
            return predict_logits(self.model, docs, n_columns, int8=int8)
        short = [doc for doc in docs if len(doc) <= LONG_DOC_ROWS]
        short_scores = iter(predict_logits(self.model, short, n_columns, int8=int8) if short else [])
        return [
            self._predict_long(doc, n_columns, int8) if len(doc) > LONG_DOC_ROWS else next(short_scores) for doc in docs
        ]

    @property
    def _uses_listener(self) -> bool:
        return any("listener" in node.name for node in self.model.get_ref("tok2vec").walk())

    def _predict_long(self, doc: Doc, n_columns: int, int8: bool) -> Floats3d:
        """Logits of one long doc, computed on overlapping windows of it."""
        ops = self.model.ops
        width = self.max_span_width
        parts = []
        for first in range(0, len(doc), LONG_DOC_ROWS):
            last = min(first + LONG_DOC_ROWS, len(doc))
            start = max(0, first - LONG_DOC_CONTEXT)
            end = min(len(doc), last + width - 1 + LONG_DOC_CONTEXT)
            logits = predict_logits(self.model, [doc[start:end].as_doc()], n_columns, int8=int8)[0]
            parts.append(ops.to_numpy(logits[first - start : last - start]))
        return ops.asarray3f(numpy.concatenate(parts))  # type: ignore[arg-type]

    def set_annotations(self, docs: Iterable[Doc], scores: List[Floats3d]) -> None:
        """Write the decoded spans to ``doc.spans[spans_key]`` with their scores."""
        labels = self.labels
        n_tgt = len(labels)
        for doc, logits in zip(docs, scores):
            grid = self.model.ops.to_numpy(logits)[..., :n_tgt]
            decoded = decode_grid(grid, float(self.cfg["threshold"]), bool(self.cfg["nested"]))
            spans = [Span(doc, d.start, d.end, labels[d.label]) for d in decoded]
            doc.spans[self.key] = SpanGroup(
                doc,
                name=self.key,
                spans=spans,
                attrs={"scores": numpy.asarray([d.score for d in decoded], dtype="float32")},
            )
            if self.cfg["set_ents"]:
                doc.ents = spans

    # ---------------------------------------------------------- serialization

    def to_bytes(self, *, exclude: Iterable[str] = tuple()) -> bytes:
        serialize = {
            "cfg": lambda: srsly.json_dumps(self.cfg),
            "vocab": lambda: self.vocab.to_bytes(exclude=exclude),
            "model": self.model.to_bytes,
        }
        return util.to_bytes(serialize, exclude)

    def from_bytes(self, bytes_data: bytes, *, exclude: Iterable[str] = tuple()) -> "KnowFREE":
        def load_model(data: bytes) -> None:
            self._size_head()
            load_model_bytes(self.model, data, self.name)

        deserialize = {
            "cfg": lambda b: self.cfg.update(srsly.json_loads(b)),
            "vocab": lambda b: self.vocab.from_bytes(b, exclude=exclude),
            "model": load_model,
        }
        util.from_bytes(bytes_data, deserialize, exclude)
        return self

    def to_disk(self, path: Union[str, Path], *, exclude: Iterable[str] = tuple()) -> None:
        serialize = {
            "cfg": lambda p: srsly.write_json(p, self.cfg),
            "vocab": lambda p: self.vocab.to_disk(p, exclude=exclude),
            "model": lambda p: self.model.to_disk(p),
        }
        util.to_disk(path, serialize, exclude)

    def from_disk(self, path: Union[str, Path], *, exclude: Iterable[str] = tuple()) -> "KnowFREE":
        def load_model(p: Path) -> None:
            self._size_head()
            load_model_bytes(self.model, Path(p).read_bytes(), self.name)

        deserialize = {
            "cfg": lambda p: self.cfg.update(srsly.read_json(p)),
            "vocab": lambda p: self.vocab.from_disk(p, exclude=exclude),
            "model": load_model,
        }
        util.from_disk(path, deserialize, exclude)  # type: ignore[arg-type]
        return self


class _ScaledOptimizer:
    """Forwards to a Thinc optimizer, multiplying every update's ``lr_scale``."""

    def __init__(self, optimizer: Optimizer, scale: float) -> None:
        self._optimizer = optimizer
        self._scale = scale

    def __call__(self, key, weights, gradient, *, lr_scale: float = 1.0):
        return self._optimizer(key, weights, gradient, lr_scale=lr_scale * self._scale)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._optimizer, name)


def is_synthetic(eg: Example) -> bool:
    """Whether an example comes from synthetic (LLM-generated) text."""
    return bool(eg.reference.user_data.get(SYNTHETIC_FLAG) or eg.predicted.user_data.get(SYNTHETIC_FLAG))


def is_unlabeled(eg: Example) -> bool:
    """Whether an example is unlabeled text (``doc.user_data["knowfree_unlabeled"]``):
    only its extension columns train."""
    return bool(eg.reference.user_data.get(UNLABELED_FLAG) or eg.predicted.user_data.get(UNLABELED_FLAG))


def find_knowfree(nlp: Language, name: Optional[str] = None) -> Optional[KnowFREE]:
    """The knowfree component called ``name`` (default: the pipeline's first), or None."""
    for pipe_name, pipe in nlp.pipeline:
        if isinstance(pipe, KnowFREE) and (name is None or pipe_name == name):
            return pipe
    return None
