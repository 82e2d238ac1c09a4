"""The PyTorch part of the KnowFREE model: token vectors -> banded span-grid features.

Equations refer to section 3.2 of the KnowFREE paper. The grid is *banded*: for
every start token ``i`` only the spans ``i .. i + k`` with ``0 <= k < W`` (W =
``max_span_width``) are built, so memory is ``O(L * W)`` instead of ``O(L^2)``.
The module works on *rows*: row ``r`` holds the W spans that start at token
``row_start[r]`` of a flat sequence of tokens (several documents may be
concatenated); only its first ``n_valid[r]`` cells end inside the row's
document. Cell ``[r, k]`` of every tensor below is the span
``row_start[r] .. row_start[r] + k``.
"""
import os
from typing import Optional

import torch
from torch import nn
from torch.nn import functional as F


def _single_thread_after_fork() -> None:
    """Run torch single-threaded in forked children (``nlp.pipe(n_process=2)``).

    OpenMP thread pools do not survive ``fork``: a child that enters a parallel
    region the parent already used hangs. With one thread torch never enters
    one, and each worker process uses one core anyway.
    """
    torch.set_num_threads(1)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_single_thread_after_fork)


def band_index(row_start: torch.Tensor, width: int, n_tokens: int) -> torch.Tensor:
    """(R, W) index of the last token of every cell, clipped to the sequence."""
    offsets = torch.arange(width, device=row_start.device)
    return (row_start.view(-1, 1) + offsets.view(1, -1)).clamp_(max=max(n_tokens - 1, 0))


def valid_cell_mask(n_valid: torch.Tensor, width: int) -> torch.Tensor:
    """Boolean (R, W) mask: cell k of row r ends inside the row's document."""
    offsets = torch.arange(width, device=n_valid.device)
    return offsets.view(1, -1) < n_valid.view(-1, 1)


class MultiHeadBiaffine(nn.Module):
    """Multi-head biaffine scorer on the band (eq. 10): H_B = F_MHB(H_s, H_e).

    The bilinear term is split into ``n_heads`` heads over the feature size;
    the affine term adds start and end projections and a learned span-width
    embedding (the ``W [h_s; 1; h_e; 1; size]`` term of biaffine span models).
    """

    def __init__(self, in_width: int, out_width: int, n_heads: int):
        super().__init__()
        self.n_heads = n_heads
        self.in_head = in_width // n_heads
        self.out_head = out_width // n_heads
        self.bilinear = nn.Parameter(
            torch.empty(n_heads, self.out_head, self.in_head, self.in_head)
        )
        nn.init.xavier_normal_(self.bilinear)
        self.affine_start = nn.Linear(in_width, out_width, bias=True)
        self.affine_end = nn.Linear(in_width, out_width, bias=False)
        self.out_width = out_width
        self.width_embedding: Optional[nn.Embedding] = None

    def configure(self, max_span_width: int) -> None:
        """Create the span-width embedding once the band width W is known."""
        if self.width_embedding is None or self.width_embedding.num_embeddings != max_span_width:
            self.width_embedding = nn.Embedding(max_span_width, self.out_width)

    def forward(
        self, h_start: torch.Tensor, h_end: torch.Tensor, band: torch.Tensor
    ) -> torch.Tensor:
        """h_start: (R, D') row starts; h_end: (T, D') all tokens; band: (R, W)
        token index of every cell's end. RETURNS (R, W, D~)."""
        rows, width = band.shape
        hs = h_start.view(rows, self.n_heads, self.in_head)
        he = h_end[band].view(rows, width, self.n_heads, self.in_head)
        # Contract the start side first: (R, H, out_head, in_head).
        left = torch.einsum("rhx,hoxy->rhoy", hs, self.bilinear)
        bilinear = torch.einsum("rhoy,rkhy->rkho", left, he).reshape(rows, width, -1)
        # The affine term is linear, so the end projection is applied per token
        # and then gathered onto the band (W times fewer multiplications).
        affine = (
            self.affine_start(h_start).unsqueeze(1)
            + self.affine_end(h_end)[band]
            + self.width_embedding.weight.unsqueeze(0)
        )
        return bilinear + affine


class LocalBandAttention(nn.Module):
    """Local multi-head attention over the cells of one band row (eq. 11-15).

    Cell ``k`` of a row attends to the cells ``k'`` with ``|k - k'| <= window``
    (eq. 11) that lie inside the document; heads split the feature size
    (eq. 12), scaled dot-product attention (eq. 13), concatenation (eq. 14)
    and a LayerNorm (eq. 15).
    """

    def __init__(self, width: int, n_heads: int, window: int):
        super().__init__()
        self.n_heads = n_heads
        self.head_width = width // n_heads
        # Q, K and V projections of eq. 12 (all heads), computed in one matmul.
        self.qkv = nn.Linear(width, 3 * width)
        self.norm = nn.LayerNorm(width)
        self.window = window

    def forward(self, grid: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """grid: (R, W, D~); valid: (R, W) bool. RETURNS (R, W, D~)."""
        rows, width, dim = grid.shape

        def split(x: torch.Tensor) -> torch.Tensor:
            return x.reshape(rows, width, self.n_heads, self.head_width).transpose(1, 2)

        q, k, v = (split(x) for x in self.qkv(grid).chunk(3, dim=-1))
        offsets = torch.arange(width, device=grid.device)
        window_mask = (offsets.view(-1, 1) - offsets.view(1, -1)).abs() <= self.window
        allowed = window_mask.unsqueeze(0) & valid.unsqueeze(1)
        # A cell past the end of the document may have no valid key: let it
        # see itself so its (unused) output stays finite.
        allowed = allowed | torch.eye(width, dtype=torch.bool, device=grid.device)
        # Scaled dot-product attention restricted to the allowed cells (eq. 13).
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed.unsqueeze(1))
        return self.norm(attended.transpose(1, 2).reshape(rows, width, dim))


class KnowFREEGridEncoder(nn.Module):
    """Token vectors -> span-grid features ``H_B + H_G`` (eq. 9-17, before W_O).

    The output layer ``W_O`` (eq. 17) is a Thinc ``Linear`` layer outside this
    module, so its width can follow the labels found at ``initialize``.
    """

    def __init__(
        self,
        *,
        hidden_width: int,
        grid_width: int,
        n_biaffine_heads: int,
        n_attention_heads: int,
        attention_window: int,
        dropout: float,
    ):
        super().__init__()
        self.max_span_width = 0
        self.grid_width = grid_width
        self.dropout = nn.Dropout(dropout)
        # nn.LazyLinear infers the token-vector width D on the first call,
        # so any tok2vec (CNN, transformer) can feed the model.
        self.start_proj = nn.LazyLinear(hidden_width)
        self.end_proj = nn.LazyLinear(hidden_width)
        self.biaffine = MultiHeadBiaffine(hidden_width, grid_width, n_biaffine_heads)
        self.attention = LocalBandAttention(grid_width, n_attention_heads, attention_window)
        self.residual_norm = nn.LayerNorm(grid_width)

    def configure(self, max_span_width: int) -> None:
        """Fix the band width W (the longest span, in tokens) before first use."""
        self.max_span_width = max_span_width
        self.biaffine.configure(max_span_width)

    def forward(
        self, tokens: torch.Tensor, row_start: torch.Tensor, n_valid: torch.Tensor
    ) -> torch.Tensor:
        """tokens: (T, D) token vectors; row_start: (R,) index of each row's
        first token; n_valid: (R,) cells of each row inside its document.

        RETURNS (torch.Tensor): (R, W, D~) features of every span.
        """
        width = self.max_span_width
        tokens = self.dropout(tokens)
        h_end = F.leaky_relu(self.end_proj(tokens))  # eq. 9
        h_start = F.leaky_relu(self.start_proj(tokens[row_start]))
        band = band_index(row_start, width, tokens.shape[0])
        valid = valid_cell_mask(n_valid, width)
        h_b = self.biaffine(self.dropout(h_start), self.dropout(h_end), band)  # eq. 10
        h_b = h_b.masked_fill(~valid.unsqueeze(-1), 0.0)
        h_attn = self.attention(h_b, valid)  # eq. 11-15
        h_g = self.residual_norm(h_b + h_attn)  # eq. 16
        return h_b + h_g  # input of W_O in eq. 17
