"""The ``knowfree`` component of a loaded pipeline and docs ready for it:
unannotated copies of gold docs, with the components before it (a shared
tok2vec or transformer) already run. Used by the analysis and threshold
tuning, which call the component's ``predict`` directly."""

from typing import Any, Iterable, List, Optional

import spacy
from spacy.language import Language
from spacy.tokens import Doc

from .component import KnowFREE, find_knowfree
from .errors import Errors


def load_pipeline(path: Any) -> Language:
    """``spacy.load(path)``; a pipeline that cannot be loaded raises KF012
    (errors that already carry a KF code, e.g. KF010, are raised as they are)."""
    try:
        return spacy.load(path)
    except Exception as err:
        if str(err).startswith("[KF"):
            raise
        text = f"{type(err).__name__}: {str(err).strip()}"
        raise ValueError(Errors.KF012.format(path=path, error=text[:300])) from None


def require_knowfree(nlp: Language, name: Optional[str] = None, path: Any = "<pipeline>") -> KnowFREE:
    """The knowfree component called ``name`` (default: the first); KF401 if absent."""
    knowfree = find_knowfree(nlp, name)
    if knowfree is None:
        raise ValueError(Errors.KF401.format(path=path, name=name or "any", pipes=nlp.pipe_names))
    return knowfree


def fresh_copies(nlp: Language, docs: Iterable[Doc]) -> List[Doc]:
    """Unannotated docs with the same tokens, in the pipeline's vocab."""
    return [Doc(nlp.vocab, words=[t.text for t in doc], spaces=[bool(t.whitespace_) for t in doc]) for doc in docs]


def run_upstream(nlp: Language, component: KnowFREE, docs: List[Doc], batch_size: int = 64) -> List[Doc]:
    """Run the components before ``component`` (e.g. a shared tok2vec or transformer)."""
    names = nlp.pipe_names
    upstream = names[: names.index(component.name)]
    if not upstream:
        return docs
    with nlp.select_pipes(enable=upstream):
        return list(nlp.pipe(docs, batch_size=batch_size))
