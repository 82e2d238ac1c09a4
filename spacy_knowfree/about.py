__title__ = "spacy-knowfree"
__version__ = "0.7.0"
