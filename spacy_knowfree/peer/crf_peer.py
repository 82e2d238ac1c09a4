"""The ``knowfree_crf`` component: a character n-gram CRF whose BIOES tags
become an input feature of the neural encoder (stacking).

With a few hundred labelled sentences, a linear-chain CRF on sparse character
n-grams (:mod:`.crf_features`) finds long, unseen spans that a span model
rarely scores high: it builds them one character at a time. This component
trains such a CRF (CRFsuite, L-BFGS) on the gold spans at ``nlp.initialize``
and writes its tag of every token to ``doc.user_data["knowfree_crf_tags"]``;
``spacy-knowfree.CharNgramEmbed.v1`` with ``crf_tags = true`` embeds them, so
the network learns when to trust the CRF.

The tags a training doc gets must look like those of unseen text, or the
network learns to copy a CRF that has memorised its training data. So
``initialize`` also trains ``folds`` CRFs on all but one fold of the
training docs, and while this process trains, a training doc (recognised by
its text) gets the tags of the CRF that did not see it ("jackknifing"). Those
held-out tags are never saved: a loaded pipeline tags every doc with the CRF
trained on all the docs.

The component is not trained by ``nlp.update``; list it in ``[training]
annotating_components`` so that the docs of every batch carry its tags.
"""

import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import srsly
from spacy import util
from spacy.language import Language
from spacy.pipeline import Pipe
from spacy.tokens import Doc
from spacy.training import Example, validate_get_examples

from ..component import is_unlabeled
from ..constants import CRF_TAGS_KEY, TARGET_SPANS_KEY
from ..errors import Errors, Warnings
from .crf_features import doc_features, flat_spans, gold_spans, spans_to_bioes


def _crfsuite(name: str) -> Any:
    """The ``pycrfsuite`` module, or a KF error naming the extra to install."""
    try:
        import pycrfsuite
    except ImportError:
        raise ImportError(Errors.KF020.format(name=name)) from None
    return pycrfsuite


def train_crf_bytes(
    docs: Sequence[Doc],
    spans_key: Optional[str],
    c1: float,
    c2: float,
    max_iterations: int,
    name: str = "knowfree_crf",
) -> Tuple[bytes, int]:
    """Train a CRF on the flat gold spans of ``docs``.

    RETURNS (Tuple[bytes, int]): the CRFsuite model file's bytes, and how many
        gold spans were left out because they overlap a longer one.
    """
    pycrfsuite = _crfsuite(name)
    trainer = pycrfsuite.Trainer(verbose=False)
    dropped = 0
    for doc in docs:
        spans, n_dropped = flat_spans(gold_spans(doc, spans_key))
        dropped += n_dropped
        trainer.append(doc_features(doc), spans_to_bioes(len(doc), spans))
    trainer.set_params({"c1": c1, "c2": c2, "max_iterations": max_iterations, "feature.possible_transitions": True})
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.crfsuite"
        trainer.train(str(path))
        return path.read_bytes(), dropped


class CRFTagger:
    """A CRFsuite tagger over model bytes, opened on first use in each process
    (taggers hold C state: they are not pickled, ``nlp.pipe(n_process=2)``
    opens one per worker)."""

    def __init__(self, model: bytes, name: str = "knowfree_crf") -> None:
        self.model = model
        self.name = name
        self._tagger: Any = None

    def tag(self, doc: Doc) -> List[str]:
        """The BIOES tag of every token of ``doc``."""
        if len(doc) == 0:
            return []
        if self._tagger is None:
            tagger = _crfsuite(self.name).Tagger()
            try:
                tagger.open_inmemory(self.model)
            except Exception as error:  # CRFsuite reports a bad model as a bare ValueError/IOError
                raise ValueError(Errors.KF025.format(name=self.name, error=error)) from None
            self._tagger = tagger
        return list(self._tagger.tag(doc_features(doc)))

    def __getstate__(self) -> Dict[str, Any]:
        return {"model": self.model, "name": self.name, "_tagger": None}


@Language.factory(
    "knowfree_crf",
    assigns=["doc.user_data"],
    default_config={
        "spans_key": TARGET_SPANS_KEY,
        "c1": 0.05,
        "c2": 0.01,
        "max_iterations": 300,
        "folds": 5,
    },
)
def make_knowfree_crf(
    nlp: Language, name: str, spans_key: Optional[str], c1: float, c2: float, max_iterations: int, folds: int
) -> "CRFPeer":
    """Create a ``knowfree_crf`` component.

    spans_key (Optional[str]): ``doc.spans`` key of the gold spans it learns
        (the knowfree or spancat component's ``spans_key``); None (``null``
        in a config) learns ``doc.ents``, the gold of a ``ner`` pipeline.
    c1 (float): L1 penalty of the CRF (0.05: the value the benchmark's
        ``crf`` system picks on dev for most cells, ``results/accuracy_runs.jsonl``).
    c2 (float): L2 penalty of the CRF (0.01, likewise).
    max_iterations (int): L-BFGS iterations (300, as the benchmark's CRF).
    folds (int): how many held-out CRFs tag the training docs (jackknifing);
        0 tags them with the CRF trained on all of them, which then knows
        their gold spans (not recommended).
    """
    return CRFPeer(nlp.vocab, name, spans_key=spans_key, c1=c1, c2=c2, max_iterations=max_iterations, folds=folds)


class CRFPeer(Pipe):
    """Tags every token with a CRF trained at ``initialize`` (see the module
    docstring); writes ``doc.user_data["knowfree_crf_tags"]``."""

    def __init__(
        self,
        vocab,
        name: str = "knowfree_crf",
        *,
        spans_key: Optional[str] = TARGET_SPANS_KEY,
        c1: float = 0.05,
        c2: float = 0.01,
        max_iterations: int = 300,
        folds: int = 5,
    ) -> None:
        self.vocab = vocab
        self.name = name
        checks = [
            ("c1", c1, c1 >= 0, "Use a penalty >= 0."),
            ("c2", c2, c2 >= 0, "Use a penalty >= 0."),
            ("max_iterations", max_iterations, max_iterations > 0, "Use a positive number of iterations."),
            ("folds", folds, folds == 0 or folds >= 2, "Use 0 (no held-out tags) or 2 and more."),
        ]
        for arg, value, ok, hint in checks:
            if not ok:
                raise ValueError(Errors.KF021.format(arg=arg, name=name, value=value, hint=hint))
        self.cfg: Dict[str, Any] = {
            "spans_key": spans_key,
            "c1": float(c1),
            "c2": float(c2),
            "max_iterations": int(max_iterations),
            "folds": int(folds),
        }
        self._tagger: Optional[CRFTagger] = None
        # text -> tags of the CRF that did not see that training doc (never saved)
        self._held_out: Dict[str, List[str]] = {}

    @property
    def is_initialized(self) -> bool:
        """Whether a CRF has been trained or loaded."""
        return self._tagger is not None

    def initialize(self, get_examples: Callable[[], Iterable[Example]], *, nlp: Optional[Language] = None) -> None:
        """Train the CRF on the gold spans of the examples, and the held-out
        CRFs that tag the training docs while this process trains. Unlabeled
        docs (``doc.user_data["knowfree_unlabeled"]``) are left out: they have
        no gold spans, not "no span here"."""
        validate_get_examples(get_examples, "CRFPeer.initialize")
        key = self.cfg["spans_key"]
        docs = [eg.reference for eg in get_examples() if not is_unlabeled(eg)]
        if not any(gold_spans(doc, key) for doc in docs):
            where = "doc.ents" if key is None else f"doc.spans['{key}']"
            raise ValueError(Errors.KF022.format(name=self.name, where=where, n=len(docs)))
        model, dropped = self._train(docs)
        if dropped:
            warnings.warn(Warnings.KW003.format(count=dropped, key=key, name=self.name), stacklevel=2)
        self._tagger = CRFTagger(model, self.name)
        self._held_out = {}
        folds = min(self.cfg["folds"], len(docs))
        if folds >= 2:
            for fold in range(folds):
                seen = [doc for i, doc in enumerate(docs) if i % folds != fold]
                held = [doc for i, doc in enumerate(docs) if i % folds == fold]
                tagger = CRFTagger(self._train(seen)[0], self.name)
                self._held_out.update((doc.text, tagger.tag(doc)) for doc in held)

    def _train(self, docs: Sequence[Doc]) -> Tuple[bytes, int]:
        cfg = self.cfg
        return train_crf_bytes(docs, cfg["spans_key"], cfg["c1"], cfg["c2"], cfg["max_iterations"], self.name)

    def __call__(self, doc: Doc) -> Doc:
        if self._tagger is None:
            raise ValueError(Errors.KF023.format(name=self.name))
        tags = self._held_out.get(doc.text)
        if tags is None or len(tags) != len(doc):
            tags = self._tagger.tag(doc)
        doc.user_data[CRF_TAGS_KEY] = tags
        return doc

    # -- serialization: the config and the CRF model (not the held-out tags) --
    def to_bytes(self, *, exclude: Iterable[str] = tuple()) -> bytes:
        model = self._tagger.model if self._tagger is not None else None
        return srsly.msgpack_dumps({"cfg": self.cfg, "model": model})

    def from_bytes(self, bytes_data: bytes, *, exclude: Iterable[str] = tuple()) -> "CRFPeer":
        data = srsly.msgpack_loads(bytes_data)
        self._load(data["cfg"], data["model"])
        return self

    def to_disk(self, path, *, exclude: Iterable[str] = tuple()) -> None:
        path = util.ensure_path(path)
        path.mkdir(parents=True, exist_ok=True)
        srsly.write_json(path / "cfg", self.cfg)
        if self._tagger is not None:
            (path / "model.crfsuite").write_bytes(self._tagger.model)

    def from_disk(self, path, *, exclude: Iterable[str] = tuple()) -> "CRFPeer":
        path = util.ensure_path(path)
        model_path = path / "model.crfsuite"
        self._load(srsly.read_json(path / "cfg"), model_path.read_bytes() if model_path.exists() else None)
        return self

    def _load(self, cfg: Dict[str, Any], model: Optional[bytes]) -> None:
        self.cfg.update(cfg)
        self._tagger = CRFTagger(model, self.name) if model else None
        self._held_out = {}

    def __reduce__(self):
        # Pipe is a Cython class whose default reduce ignores __dict__.
        return (_unpickle_peer, (self.__class__, dict(self.__dict__)))


def _unpickle_peer(cls, state):
    obj = cls.__new__(cls)
    obj.__dict__.update(state)
    return obj
