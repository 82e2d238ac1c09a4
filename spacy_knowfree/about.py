__title__ = "spacy-knowfree"
__version__ = "0.8.0"
