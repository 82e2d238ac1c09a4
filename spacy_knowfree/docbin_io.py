"""Reading and writing ``.spacy`` DocBins, user data (the synthetic flag) included."""

from pathlib import Path
from typing import Iterable, List, Optional, Union

from spacy.tokens import Doc, DocBin
from spacy.vocab import Vocab
from tqdm import tqdm

from .errors import Errors

PathLike = Union[str, Path]


def read_docbin(path: PathLike, vocab: Optional[Vocab] = None, allow_empty: bool = False) -> List[Doc]:
    """Every doc of a DocBin; an empty one raises KF008 unless ``allow_empty``,
    a file that is not a DocBin (empty, damaged, another format) KF124."""
    try:
        docs = list(DocBin().from_disk(Path(path)).get_docs(vocab if vocab is not None else Vocab()))
    except OSError:
        raise
    except Exception as err:  # zlib, msgpack and numpy errors of a damaged file
        raise ValueError(Errors.KF124.format(path=path, error=_short(err))) from None
    if not docs and not allow_empty:
        raise ValueError(Errors.KF008.format(path=path))
    return docs


def _short(err: Exception, limit: int = 160) -> str:
    """``Type: first sentence`` of an error, cut to ``limit`` characters."""
    text = f"{type(err).__name__}: {str(err).strip().split('. ')[0]}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def write_docbin(docs: Iterable[Doc], path: PathLike) -> int:
    """Save docs with their user data, creating the parent folder. RETURNS (int): docs written."""
    docs = list(docs)
    docbin = DocBin(store_user_data=True)
    for doc in tqdm(docs, desc="Building DocBin", unit="doc", disable=len(docs) < 1000, leave=False):
        docbin.add(doc)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    docbin.to_disk(path)
    return len(docbin)
