"""Local-XL core: Longformer-style sliding-window attention (Beltagy et al. 2020) with XL memory.

Each step attends to itself and the previous ``window`` steps of its episode, across segment
boundaries through the XL memory. Training cost is O(T * window): queries go in blocks of
``window`` steps, each attending to its own block and the ``window`` keys before it, instead of
one T x (window + T) score matrix.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from memrl.models.attention import EpisodeWindow, FeedForward, RelativeWindowAttention, WindowCore


class LocalXLLayer(nn.Module):
    """Pre-LayerNorm residual block: ``h += Attn(LN([sg(M); h]));  h += FF(LN(h))``."""

    def __init__(self, d_model: int, num_heads: int, kv_heads: int, d_ff: int) -> None:
        super().__init__()
        self.attention_norm = nn.LayerNorm(d_model)
        self.attention = RelativeWindowAttention(d_model, num_heads, kv_heads)
        self.feed_forward_norm = nn.LayerNorm(d_model)
        self.feed_forward = FeedForward(d_model, d_ff)

    def forward(self, h: Tensor, memory: Tensor, window: EpisodeWindow) -> Tensor:
        """h [B, T, d], memory [B, M, d] (already detached) -> [B, T, d]."""
        keys = self.attention_norm(torch.cat([memory, h], dim=1))
        h = h + self.attention(keys[:, window.memory_len :], keys, window)
        return h + self.feed_forward(self.feed_forward_norm(h))


class LocalXLCore(WindowCore):
    """Sliding-window attention with XL memory, computed in blocks of ``window`` queries.

    Args (keyword-only):
        d_model: residual width (128, same RL scale as the trxl/gtrxl defaults).
        num_layers: blocks (4).
        num_heads: query heads (4).
        window: w, steps each step sees before itself (64, as trxl's memory_len; Longformer
            used 512 tokens for text).
        d_ff: feed-forward width (512, 4x d_model).
        kv_heads: K/V heads for grouped/multi-query attention (None = num_heads).
        block: queries per attention block (None = window, the Longformer chunking; any
            positive value gives the same result, only cost and memory change).

    Pre-LayerNorm blocks (TrXL-I ordering, Parisotto et al. 2020, stable without warm-up) with a
    final LayerNorm on the output. Output: [B, T, d_model]. Raises ValueError like trxl.
    """

    name = "local_xl"

    def __init__(
        self,
        input_dim: int,
        *,
        d_model: int = 128,
        num_layers: int = 4,
        num_heads: int = 4,
        window: int = 64,
        d_ff: int = 512,
        kv_heads: int | None = None,
        block: int | None = None,
    ) -> None:
        super().__init__(
            input_dim,
            d_model=d_model,
            num_layers=num_layers,
            num_heads=num_heads,
            memory_len=window,
            d_ff=d_ff,
            kv_heads=kv_heads,
            memory_name="window",
        )
        block = window if block is None else block
        if not isinstance(block, int) or block <= 0:
            raise ValueError(f"block must be a positive int or None, got {block!r}")
        self.block = block
        self.layers.extend(
            LocalXLLayer(d_model, num_heads, self.kv_heads, d_ff) for _ in range(num_layers)
        )
        self.out_norm = nn.LayerNorm(d_model)

    def block_size(self, steps: int) -> int:
        """``min(block, T)``: a single step (acting) costs one query against window + 1 keys."""
        return min(self.block, steps)
