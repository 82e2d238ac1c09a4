"""KnowFREE pipeline 1: extension labels from knowledge (section 3.1).

* :mod:`.lexicon`: the offline jieba lexicon component (``knowfree_lexicon``);
* :mod:`.pipeline`: the knowledge pipeline ``knowfree extend`` runs (a user
  config, e.g. spacy-llm components with the spacy-knowfree tasks, or the
  lexicon), and the accounting of its LLM calls;
* :mod:`.label_merging`: merging extension labels that mean the same thing
  (section 3.1, P_merge).

Importing this package needs no optional extra.
"""

from .lexicon import KnowFreeLexicon, make_knowfree_lexicon
from .pipeline import EXTENSION_SPANS_KEY, build_knowledge_pipeline

__all__ = ["EXTENSION_SPANS_KEY", "KnowFreeLexicon", "build_knowledge_pipeline", "make_knowfree_lexicon"]
