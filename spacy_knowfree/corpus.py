"""The training reader for gold mixed with unlabeled text:
``spacy-knowfree.Corpus.v1`` reads a DocBin as ``spacy.Corpus.v1`` does and
keeps the labeled docs a set share of every epoch.

Unlabeled docs (``doc.user_data["knowfree_unlabeled"]``) train only the
extension columns. A pile of them beside a few hundred gold sentences would
otherwise fill most batches: at a fixed number of steps the target columns
then get a fraction of their updates (Resume K=250 with 3,553 unlabeled docs:
93% of every epoch). With ``labeled_share`` set, every labeled doc is repeated
(up-sampled) until labeled docs make at least that share of the epoch; every
unlabeled doc still appears once, so no text is dropped.
"""

import math
from pathlib import Path
from typing import Callable, Iterable, Iterator, List, Optional, Union

from spacy.language import Language
from spacy.training import Corpus, Example
from spacy.util import registry

from .component import is_unlabeled
from .errors import Errors


@registry.readers("spacy-knowfree.Corpus.v1")
def create_knowfree_corpus(
    path: Optional[Union[str, Path]],
    gold_preproc: bool = False,
    max_length: int = 0,
    limit: int = 0,
    augmenter: Optional[Callable] = None,
    labeled_share: float = 0.0,
) -> Callable[[Language], Iterable[Example]]:
    """A ``spacy.Corpus.v1`` whose labeled docs make at least ``labeled_share``
    of each epoch.

    path, gold_preproc, max_length, limit, augmenter: as in ``spacy.Corpus.v1``.
    labeled_share (float): the least share (0 to 1, exclusive of 1) of labeled
        docs in an epoch. Labeled docs are repeated as a whole (each one the
        same number of times) to reach it. 0 (the default) repeats nothing:
        the reader then yields what ``spacy.Corpus.v1`` yields.
    RETURNS (Callable[[Language], Iterable[Example]]): the reader.
    """
    if path is None:
        raise ValueError(Errors.KF130.format(arg="path", value=path, expected="the path of a .spacy DocBin"))
    return LabeledShareCorpus(
        Corpus(path, gold_preproc=gold_preproc, max_length=max_length, limit=limit, augmenter=augmenter),
        labeled_share=labeled_share,
        path=str(path),
    )


class LabeledShareCorpus:
    """Examples of a corpus with the labeled ones repeated to a share of the total."""

    def __init__(self, corpus: Callable[[Language], Iterable[Example]], *, labeled_share: float, path: str) -> None:
        if not isinstance(labeled_share, (int, float)) or not 0.0 <= labeled_share < 1.0:
            raise ValueError(
                Errors.KF130.format(
                    arg="labeled_share", value=labeled_share, expected="a number from 0 (off) up to, not including, 1"
                )
            )
        self.corpus = corpus
        self.labeled_share = float(labeled_share)
        self.path = path

    def __call__(self, nlp: Language) -> Iterator[Example]:
        if self.labeled_share == 0.0:
            yield from self.corpus(nlp)
            return
        labeled: List[Example] = []
        unlabeled: List[Example] = []
        for eg in self.corpus(nlp):
            (unlabeled if is_unlabeled(eg) else labeled).append(eg)
        if unlabeled and not labeled:
            raise ValueError(Errors.KF131.format(path=self.path, count=len(unlabeled)))
        for _ in range(repeats(len(labeled), len(unlabeled), self.labeled_share)):
            yield from labeled
        yield from unlabeled


def repeats(n_labeled: int, n_unlabeled: int, labeled_share: float) -> int:
    """How many times each labeled doc appears so that labeled docs make at
    least ``labeled_share`` of the epoch (at least once)."""
    if n_labeled == 0 or n_unlabeled == 0 or labeled_share <= 0.0:
        return 1
    wanted = labeled_share * n_unlabeled / ((1.0 - labeled_share) * n_labeled)
    return max(1, math.ceil(wanted - 1e-9))
