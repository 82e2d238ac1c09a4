__title__ = "spacy-knowfree"
__version__ = "0.2.0"
