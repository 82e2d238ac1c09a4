"""spacy-knowfree: the KnowFREE span labeler and its knowledge workflow for spaCy."""

from .about import __version__

__all__ = ["__version__"]
