"""The registered architecture ``spacy-knowfree.KnowFREE.v1``."""

from typing import List, Optional, Union

from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import Linear, Model, chain, zero_init
from thinc.types import Floats2d, Floats3d

from ..errors import Errors
from .ngram_evidence import ngram_evidence as ngram_evidence_layer
from .ngram_evidence import resize_ngram_evidence
from .span_grid import build_grid_encoder, predict_span_logits, resize_span_head, span_grid_head
from .torch_grid import KnowFREEGridEncoder


@registry.architectures("spacy-knowfree.KnowFREE.v1")
def build_knowfree_model(
    tok2vec: Model[List[Doc], List[Floats2d]],
    hidden_width: int = 200,
    grid_width: int = 200,
    n_biaffine_heads: int = 4,
    n_attention_heads: int = 10,
    attention_window: int = 3,
    dropout: float = 0.4,
    batch_rows: int = 256,
    token_evidence: bool = False,
    ngram_evidence: bool = False,
    ngram_buckets: int = 262144,
    max_span_width: Union[int, str] = "auto",
    inside_pooling: bool = False,
) -> Model[List[Doc], List[Floats3d]]:
    """Build the KnowFREE span model (section 3.2 of the paper).

    tok2vec (Model[List[Doc], List[Floats2d]]): any spaCy token-to-vector layer
        (H, width D).
    hidden_width (int): D', width of the start/end projections (eq. 9).
    grid_width (int): D~, channels of the biaffine span grid (eq. 10).
    n_biaffine_heads (int): heads of the multi-head biaffine decoder.
    n_attention_heads (int): K, heads of the local attention (eq. 12-14).
    attention_window (int): w, the local attention window (eq. 11).
    dropout (float): dropout on token vectors and start/end features.
    batch_rows (int): most start positions (band rows) scored in one torch
        call; bounds memory independently of document length. 256 keeps the
        band's temporaries in the CPU cache (12% less head time than 1024,
        benchmarks/notes/speed.md); a GPU config may use more.
    token_evidence (bool): add per-token begin/inside/end scores of every
        label to the span logits (``begin[s] + sum(inside[s..e]) + end[e]``),
        so a long span gathers evidence from all its tokens.
    ngram_evidence (bool): add the same begin/inside/end scores computed
        linearly from each token's hashed character n-grams (the features of
        a character CRF), a "wide" term beside the deep model.
    ngram_buckets (int): rows of the hashed n-gram weight table.
    max_span_width (Union[int, str]): W, the band width: the longest span, in
        tokens. The packaged configs interpolate the component's setting
        (``${components.knowfree.max_span_width}``); "auto" (the default)
        leaves it to the ``knowfree`` component, which sets it before
        ``initialize`` from its own ``max_span_width``.
    inside_pooling (bool): add a linear projection of the mean token vector
        inside each span to the biaffine features H_B, so a span longer than
        the tok2vec's receptive field is also seen from the inside (as
        spancat's mean pooling sees it), not only from its two ends.
    RETURNS (Model[List[Doc], List[Floats3d]]): per doc, logits of shape
        (n_tokens, max_span_width, n_labels): cell [i, k] is the span of tokens
        i..i+k, columns are the target labels then the extension labels. The
        label count is set by the ``knowfree`` component (the model's
        ``attrs["resize_output"]``).
    """
    checks = [
        ("hidden_width", hidden_width, hidden_width > 0, "must be positive"),
        ("grid_width", grid_width, grid_width > 0, "must be positive"),
        (
            "n_biaffine_heads",
            n_biaffine_heads,
            n_biaffine_heads > 0 and hidden_width % n_biaffine_heads == 0 and grid_width % n_biaffine_heads == 0,
            "must divide hidden_width and grid_width",
        ),
        (
            "n_attention_heads",
            n_attention_heads,
            n_attention_heads > 0 and grid_width % n_attention_heads == 0,
            "must divide grid_width",
        ),
        ("attention_window", attention_window, attention_window >= 0, "must be >= 0"),
        ("dropout", dropout, 0.0 <= dropout < 1.0, "must be in [0, 1)"),
        ("batch_rows", batch_rows, batch_rows > 0, "must be positive"),
        ("ngram_buckets", ngram_buckets, ngram_buckets > 0, "must be positive"),
        (
            "max_span_width",
            max_span_width,
            max_span_width == "auto"
            or (isinstance(max_span_width, int) and not isinstance(max_span_width, bool) and max_span_width >= 1),
            'must be a positive number of tokens or "auto"',
        ),
    ]
    for arg, value, ok, hint in checks:
        if not ok:
            raise ValueError(Errors.KF007.format(arg=arg, value=value, hint=hint))
    encoder = KnowFREEGridEncoder(
        hidden_width=hidden_width,
        grid_width=grid_width,
        n_biaffine_heads=n_biaffine_heads,
        n_attention_heads=n_attention_heads,
        attention_window=attention_window,
        dropout=dropout,
        inside_pooling=inside_pooling,
    )
    head = span_grid_head(
        build_grid_encoder(encoder),
        Linear(),
        max_span_width=None if max_span_width == "auto" else int(max_span_width),
        batch_rows=batch_rows,
        # zero-initialised: training starts from the plain span model
        evidence_layer=Linear(init_W=zero_init) if token_evidence else None,
    )
    if ngram_evidence:
        model = wide_and_deep(tok2vec, ngram_evidence_layer(ngram_buckets), head)
    else:
        model = chain(tok2vec, head)
        model.set_ref("tok2vec", tok2vec)
        model.set_ref("head", head)
    model.attrs["resize_output"] = resize_output
    return model


def resize_output(model: Model, n_out: int) -> Model:
    """Size a KnowFREE.v1 model for ``n_out`` output columns (labels): the
    head's output and evidence layers and the n-gram evidence table.
    RETURNS (Model): the model."""
    resize_span_head(model.get_ref("head"), n_out)
    if model.has_ref("ngram_evidence"):
        resize_ngram_evidence(model.get_ref("ngram_evidence"), 3 * n_out)
    return model


def load_model_bytes(model: Model, data: bytes, name: str) -> Model:
    """``model.from_bytes(data)``; weights saved with another layer layout of
    the model raise KF315 instead of thinc's "mismatched structure"."""
    try:
        return model.from_bytes(data)
    except ValueError as err:
        if "mismatched structure" in str(err):
            raise ValueError(Errors.KF315.format(name=name)) from None
        raise


def predict_logits(
    model: Model, docs: List[Doc], n_columns: Optional[int] = None, *, int8: bool = False
) -> List[Floats3d]:
    """Inference with a KnowFREE.v1 model computing only the first
    ``n_columns`` output columns (default: all, as ``model.predict``),
    optionally with the span head's Linear layers in int8 (CPU).

    RETURNS (List[Floats3d]): per doc, (n_tokens, max_span_width, n_columns).
    """
    vectors = model.get_ref("tok2vec").predict(docs)
    head_input = vectors
    if model.has_ref("ngram_evidence"):
        head_input = (vectors, model.get_ref("ngram_evidence").predict(docs))
    return predict_span_logits(model.get_ref("head"), head_input, n_columns, int8=int8)


def wide_and_deep(tok2vec: Model, wide: Model, head: Model) -> Model[List[Doc], List[Floats3d]]:
    """Docs -> logits, the head fed with (tok2vec vectors, n-gram evidence)."""
    return Model(
        "knowfree_wide_and_deep",
        _wide_and_deep_forward,
        init=_wide_and_deep_init,
        layers=[tok2vec, wide, head],
        refs={"tok2vec": tok2vec, "ngram_evidence": wide, "head": head},
    )


def _wide_and_deep_forward(model: Model, docs: List[Doc], is_train: bool):
    vectors, bp_vectors = model.get_ref("tok2vec")(docs, is_train)
    scores, bp_scores = model.get_ref("ngram_evidence")(docs, is_train)
    logits, bp_head = model.get_ref("head")((vectors, scores), is_train)

    def backprop(d_logits: List[Floats3d]) -> List[Doc]:
        d_vectors, d_scores = bp_head(d_logits)
        bp_scores(d_scores)
        return bp_vectors(d_vectors)

    return logits, backprop


def _wide_and_deep_init(model: Model, X: Optional[List[Doc]] = None, Y=None) -> Model:
    tok2vec, wide, head = (model.get_ref(name) for name in ("tok2vec", "ngram_evidence", "head"))
    tok2vec.initialize(X=X)
    if head.has_dim("nO"):  # set by the component from its labels
        resize_ngram_evidence(wide, 3 * head.get_dim("nO"))
        wide.initialize()
    head.initialize(X=tok2vec.predict(X) if X is not None else None)
    return model
