"""spacy-llm tasks of spacy-knowfree, one package per task (as in spacy-llm's
``tasks/<task>/``), with what they share: the task base class, few-shot
examples, span placement, sharding, per-doc stats and the prompt templates
(``templates/<task>.v<N>.<lang>.jinja``)."""
