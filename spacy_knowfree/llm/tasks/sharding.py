"""Token counting that works for Chinese, for spacy-llm's shard mapper.

spacy-llm's default estimator counts whitespace-separated words, which makes
a whole Chinese paragraph "one token" and disables sharding of long Chinese
documents. This estimator counts each CJK character (and each other
non-space symbol such as emoji or full-width punctuation) as one token and
each run of Latin letters or digits as ``ceil(len / 4)`` tokens, a
deliberate over-estimate for common BPE vocabularies.
"""

import math
import re
from typing import Optional

from spacy_llm.registry import registry
from spacy_llm.tasks.util.sharding import make_shard_mapper
from spacy_llm.ty import NTokenEstimator, ShardMapper

_ALNUM_RUN = re.compile(r"[A-Za-z0-9_]+")


def count_tokens_cjk(text: str) -> int:
    """Estimate the number of LLM tokens in ``text`` (CJK-aware, over-estimates)."""
    n = 0
    for run in _ALNUM_RUN.findall(text):
        n += math.ceil(len(run) / 4)
    rest = _ALNUM_RUN.sub("", text)
    n += sum(1 for ch in rest if not ch.isspace())
    return n


@registry.llm_misc("spacy-knowfree.CJKTokenEstimator.v1")
def make_cjk_token_estimator() -> NTokenEstimator:
    """Registered factory for :func:`count_tokens_cjk`."""
    return count_tokens_cjk


def default_shard_mapper(shard_mapper: Optional[ShardMapper] = None) -> ShardMapper:
    """spacy-llm's shard mapper with the CJK-aware estimator, unless one is given."""
    return shard_mapper or make_shard_mapper(n_token_estimator=count_tokens_cjk)
