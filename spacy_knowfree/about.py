__title__ = "spacy-knowfree"
__version__ = "0.9.0"
