__title__ = "spacy-knowfree"
__version__ = "0.1.0"
