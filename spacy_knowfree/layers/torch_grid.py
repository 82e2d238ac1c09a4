"""The PyTorch part of the KnowFREE model: token vectors -> banded span-grid features.

Equations refer to section 3.2 of the KnowFREE paper. The grid is *banded*: for
every start token ``i`` only the spans ``i .. i + k`` with ``0 <= k < W`` (W =
``max_span_width``) are built, so memory is ``O(L * W)`` instead of ``O(L^2)``.
The module works on *rows*: row ``r`` holds the W spans that start at token
``r`` of a flat sequence of tokens (several documents may be concatenated);
only its first ``n_valid[r]`` cells end inside the row's document. Cell
``[r, k]`` is the span ``r .. r + k``.

Only the cells inside a document are computed past the biaffine: they are
*packed* (row by row, ``cells`` holds their flat index ``r * W + k``), so the
Q/K/V projection, the attention and the norms, the costly part, never see the
cells past a document's end (half the band for sentence-length documents at
W = 32). The local attention works on the packed cells directly: the cells of
a row are consecutive there, so the window of cell ``p`` is ``p - w .. p + w``
restricted to its row. The result equals computing the whole band and
dropping the cells past the end (``tests/test_hot_path.py`` keeps that
reference implementation).
"""

import os
from typing import Optional, Tuple

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


# Packed cells are attended in blocks of this many queries (with the 2w keys
# around each block): one fused attention call instead of one per row.
ATTENTION_BLOCK = 16


def band_index(row_start: torch.Tensor, width: int, n_tokens: int) -> torch.Tensor:
    """(R, W) index of the last token of every cell, clipped to the sequence."""
    offsets = torch.arange(width, device=row_start.device)
    return (row_start.view(-1, 1) + offsets.view(1, -1)).clamp_(max=max(n_tokens - 1, 0))


def valid_cell_mask(n_valid: torch.Tensor, width: int) -> torch.Tensor:
    """Boolean (R, W) mask: cell k of row r ends inside the row's document."""
    offsets = torch.arange(width, device=n_valid.device)
    return offsets.view(1, -1) < n_valid.view(-1, 1)


def band_windows(x: torch.Tensor, width: int) -> torch.Tensor:
    """(T, F) -> (T, width, F) view: row ``r`` holds ``x[r : r + width]``,
    zeros past the end. No copy of the band is made."""
    padded = F.pad(x, (0, 0, 0, width - 1))
    return padded.unfold(0, width, 1).transpose(1, 2)


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
        self.bilinear = nn.Parameter(torch.empty(n_heads, self.out_head, self.in_head, self.in_head))
        nn.init.xavier_normal_(self.bilinear)
        self.affine_start = nn.Linear(in_width, out_width, bias=True)
        self.affine_end = nn.Linear(in_width, out_width, bias=False)
        self.out_width = out_width
        self.width_embedding: Optional[nn.Embedding] = None

    def configure(self, max_span_width: int) -> None:
        """Create the span-width embedding once the band width W is known."""
        if self.width_embedding is None or self.width_embedding.num_embeddings != max_span_width:
            self.width_embedding = nn.Embedding(max_span_width, self.out_width)

    def forward(self, h_start: torch.Tensor, h_end: torch.Tensor) -> torch.Tensor:
        """h_start: (R, D') row starts; h_end: (T, D') all tokens, T >= R;
        row r starts at token r. RETURNS (R, W, D~); cells past the last
        token get the affine terms of a zero end vector."""
        rows, n_heads, size = h_start.shape[0], self.n_heads, self.in_head
        width = self.width_embedding.num_embeddings  # type: ignore[union-attr]
        # Contract the start side per head in one batched matmul:
        # left[h, r] = h_start[r, h] @ bilinear[h] -> (out_head, in_head).
        weights = self.bilinear.permute(0, 2, 1, 3).reshape(n_heads, size, -1)
        left = torch.bmm(h_start.view(rows, n_heads, size).transpose(0, 1), weights)
        left = left.view(n_heads, rows, self.out_head, size)
        ends = h_end.view(-1, n_heads, size)
        bilinear = torch.cat(
            [
                # (R, W, in_head) @ (R, in_head, out_head): every cell of a row at once
                torch.bmm(band_windows(ends[:, h], width)[:rows], left[h].transpose(1, 2))
                for h in range(n_heads)
            ],
            dim=-1,
        )
        # The affine term is linear, so the end projection is applied per token
        # and then laid onto the band (W times fewer multiplications); the
        # terms are added in place (cat's output is not needed by autograd).
        bilinear += band_windows(self.affine_end(h_end), width)[:rows]
        bilinear += self.affine_start(h_start).unsqueeze(1)
        bilinear += self.width_embedding.weight  # type: ignore[union-attr]
        return bilinear


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

    def forward(self, cells: torch.Tensor, position: torch.Tensor, row_length: torch.Tensor) -> torch.Tensor:
        """cells: (N, D~) packed cells, those of a row consecutive and in
        order; position: (N,) each cell's index k in its row; row_length:
        (N,) cells in its row. A cell sees the cells of its row within the
        window (and always itself). RETURNS (N, D~)."""
        n_cells, dim = cells.shape
        heads, size, w = self.n_heads, self.head_width, self.window
        block = ATTENTION_BLOCK
        n_blocks = -(-n_cells // block)
        span = block + 2 * w  # the keys of a block of queries
        # w rows of padding before and after; the pad is never an allowed key
        qkv = self.qkv(F.pad(cells, (0, 0, w, n_blocks * block - n_cells + w)))
        q = qkv[w : w + n_blocks * block, :dim].reshape(n_blocks, block, heads, size).transpose(1, 2)
        kv = qkv[:, dim:].unfold(0, span, block).reshape(n_blocks, 2, heads, size, span)
        offsets = torch.arange(span, device=cells.device)
        delta = offsets.view(1, -1) - w - torch.arange(block, device=cells.device).view(-1, 1)
        fill = n_blocks * block - n_cells
        key_position = F.pad(position, (0, fill)).view(n_blocks, block, 1) + delta
        allowed = (
            (delta.abs() <= w)
            & (key_position >= 0)
            & (key_position < F.pad(row_length, (0, fill), value=1).view(n_blocks, block, 1))
        )
        allowed = allowed | (delta == 0)
        # Scaled dot-product attention restricted to the allowed cells (eq. 13).
        attended = F.scaled_dot_product_attention(
            q,
            kv[:, 0].transpose(-1, -2),
            kv[:, 1].transpose(-1, -2),
            attn_mask=allowed.unsqueeze(1),
        )
        return self.norm(attended.transpose(1, 2).reshape(n_blocks * block, dim)[:n_cells])


class KnowFREEGridEncoder(nn.Module):
    """Token vectors -> span-grid features ``H_B + H_G`` (eq. 9-17, before W_O)
    of the cells inside the documents.

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
        inside_pooling: bool = False,
    ):
        super().__init__()
        self.grid_width = grid_width
        # the mean of the span's projected token vectors, added to H_B
        # (spancat's view of a span from the inside); off: the paper's model
        self.inside_proj = nn.LazyLinear(grid_width) if inside_pooling else None
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
        self.biaffine.configure(max_span_width)

    @property
    def max_span_width(self) -> int:
        """W, the band width (0 until :meth:`configure`)."""
        embedding = self.biaffine.width_embedding
        return 0 if embedding is None else embedding.num_embeddings

    def inside_mean(self, tokens: torch.Tensor, rows: int, width: int) -> torch.Tensor:
        """(R, W, D~): cell ``[r, k]`` holds the mean of ``inside_proj`` over
        tokens ``r .. r + k``, from prefix sums (linear cost); cells past the
        sequence's end hold values that are never read."""
        prefix = F.pad(self.inside_proj(tokens).cumsum(0), (0, 0, 1, 0))  # type: ignore[misc]
        sums = band_windows(prefix[1:], width)[:rows] - prefix[:rows].unsqueeze(1)
        return sums / torch.arange(1, width + 1, device=sums.device, dtype=sums.dtype).view(1, -1, 1)

    def forward(self, tokens: torch.Tensor, n_valid: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """tokens: (T, D) token vectors; n_valid: (R,) cells of each row inside
        its document (R <= T; row r starts at token r).

        RETURNS (Tuple[torch.Tensor, torch.Tensor]): the (N, D~) features of
        the N cells inside the documents, and their (N,) flat index
        ``r * W + k`` into the (R, W) band, in increasing order.
        """
        width, rows = self.max_span_width, n_valid.shape[0]
        tokens = self.dropout(tokens)
        h_end = F.leaky_relu(self.end_proj(tokens))  # eq. 9
        h_start = F.leaky_relu(self.start_proj(tokens[:rows]))
        h_b = self.biaffine(self.dropout(h_start), self.dropout(h_end))  # eq. 10
        if self.inside_proj is not None:
            h_b = h_b + self.inside_mean(tokens, rows, width)
        cells = valid_cell_mask(n_valid, width).view(-1).nonzero().squeeze(1)
        h_b = h_b.reshape(-1, self.grid_width).index_select(0, cells)
        position = cells % width
        h_attn = self.attention(h_b, position, n_valid.index_select(0, cells // width))  # eq. 11-15
        h_g = self.residual_norm(h_b + h_attn)  # eq. 16
        return h_b + h_g, cells  # input of W_O in eq. 17
