__title__ = "spacy-knowfree"
__version__ = "0.6.0"
