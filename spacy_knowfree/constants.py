"""Names shared across spacy-knowfree: span keys, doc flags, label families
and the CJK character class. Every module takes them from here."""

import re

#: Default ``doc.spans`` key of the target spans (spaCy's spancat default).
TARGET_SPANS_KEY = "sc"
#: ``doc.spans`` key of the extension spans (LLM or lexicon knowledge).
EXTENSION_SPANS_KEY = "knowfree_ext"

#: ``doc.user_data`` flag of synthetic docs, weighed by beta in the loss (eq. 19).
SYNTHETIC_FLAG = "knowfree_synthetic"
#: ``doc.user_data`` flag of unlabeled docs: their target columns are out of the loss.
UNLABELED_FLAG = "knowfree_unlabeled"
#: ``doc.user_data`` key of where a synthetic doc came from (method, source, ...).
PROVENANCE_KEY = "knowfree_synthesis"
#: ``doc.user_data`` key of the CRF peer's BIOES tag of every token (``knowfree_crf``).
CRF_TAGS_KEY = "knowfree_crf_tags"
#: ``doc.user_data`` key of the reply of a text-generating LLM task.
GENERATION_KEY = "knowfree_generation"
#: ``doc.user_data`` key of the per-doc counts of dropped and repaired LLM items.
LLM_STATS_KEY = "knowfree_llm_stats"

#: Label families of extension spans: ``ENT:<type>``, ``POS:<TAG>``, ``SEG:WORD``.
ENT_PREFIX = "ENT:"
POS_PREFIX = "POS:"
SEG_PREFIX = "SEG:"
SEG_WORD_LABEL = SEG_PREFIX + "WORD"
FAMILY_PREFIXES = (ENT_PREFIX, POS_PREFIX, SEG_PREFIX)

#: CJK ideographs: Extension A, the Unified block and the compatibility block.
CJK_RANGES = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
#: One CJK ideograph.
CJK_CHAR_RE = re.compile(f"[{CJK_RANGES}]")
