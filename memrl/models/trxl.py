"""Transformer-XL core (Dai et al. 2019): relative positions, segment memory, post-LayerNorm."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from memrl.models.attention import (
    EpisodeWindow,
    FeedForward,
    RelativeBiases,
    RelativeWindowAttention,
    WindowCore,
)


class TrXLLayer(nn.Module):
    """``h = LN(h + RelAttn(h, [sg(memory); h]));  h = LN(h + FF(h))`` (the paper's placement)."""

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        kv_heads: int,
        d_ff: int,
        biases: RelativeBiases | None = None,
    ) -> None:
        super().__init__()
        self.attention = RelativeWindowAttention(d_model, num_heads, kv_heads, biases)
        self.attention_norm = nn.LayerNorm(d_model)
        self.feed_forward = FeedForward(d_model, d_ff)
        self.feed_forward_norm = nn.LayerNorm(d_model)

    def forward(self, h: Tensor, memory: Tensor, window: EpisodeWindow) -> Tensor:
        """h [B, T, d], memory [B, M, d] (already detached) -> [B, T, d]."""
        keys = torch.cat([memory, h], dim=1)
        h = self.attention_norm(h + self.attention(h, keys, window))
        return self.feed_forward_norm(h + self.feed_forward(h))


class TrXLCore(WindowCore):
    """Transformer-XL over a sliding window of the last ``memory_len`` steps of the episode.

    Window rule: every query sees exactly itself and the previous ``memory_len`` steps of its
    episode, in training as in acting (Transformer-XL's ``same_length`` mode). The references
    let a training query also see the earlier steps of its own segment (up to M + T - 1 keys);
    memrl does not, so one step at a time computes the same function as a whole sequence. The
    content/position biases u, v are shared by all layers, as in Transformer-XL.

    Args (keyword-only). The defaults are a small RL-agent scale chosen for memrl's tasks, not
    a paper's table (Dai et al.'s language models are 10-50x larger); check them against ReLiT's
    (Pramanik et al. 2023) baseline tables before quoting them as the paper's:
        d_model: residual width (128).
        num_layers: blocks (4).
        num_heads: query heads (4; head size d_model / num_heads = 32).
        memory_len: M, steps of memory per layer (64).
        d_ff: feed-forward width (512, the 4x ratio of Vaswani et al. 2017).
        kv_heads: K/V heads for grouped/multi-query attention (None = num_heads, plain MHA).

    Output: [B, T, d_model]. Raises ValueError for non-positive sizes, d_model not divisible by
    num_heads into an even head size, or kv_heads not dividing num_heads.
    """

    name = "trxl"

    def __init__(
        self,
        input_dim: int,
        *,
        d_model: int = 128,
        num_layers: int = 4,
        num_heads: int = 4,
        memory_len: int = 64,
        d_ff: int = 512,
        kv_heads: int | None = None,
    ) -> None:
        super().__init__(
            input_dim,
            d_model=d_model,
            num_layers=num_layers,
            num_heads=num_heads,
            memory_len=memory_len,
            d_ff=d_ff,
            kv_heads=kv_heads,
        )
        self.layers.extend(
            TrXLLayer(d_model, num_heads, self.kv_heads, d_ff, self.relative_biases)
            for _ in range(num_layers)
        )
