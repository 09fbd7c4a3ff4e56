"""Local-XL core: Longformer's attention (Beltagy et al. 2020) with Transformer-XL memory.

What Longformer adds to a plain sliding window, kept here for a stream of RL steps:

* **Dilated sliding windows, per head.** Head ``h`` attends to itself and to ``window`` earlier
  steps spaced ``d_h`` apart (``dilations``, e.g. ``(1, 1, 2, 4)``): distances
  ``0, d_h, .., window * d_h``. Each head scores ``window + 1`` keys, yet the layer reaches
  ``window * max(d)`` steps back and stacking layers widens the receptive field further; heads
  with ``d_h = 1`` keep the local detail.
* **Global attention** (``num_global`` learned tokens per layer). Longformer's global tokens see,
  and are seen by, the whole sequence; a token that sees a whole episode cannot live in a
  fixed-size streaming state, so memrl keeps the half that can: learned, input-independent
  global keys/values every query attends to (content score only, no position term) - a
  per-layer learned memory/sink. They are parameters, not state.

The XL memory holds each layer's inputs of the last ``window * max(dilations)`` steps of the
episode (``memory_len``), so the widest dilated window is covered across segment boundaries and
the window state, its per-step slices and replay's rebuild work as for trxl. Training is blocked:
queries go in blocks of ``block`` steps (default ``window``) against ``memory_len + block`` keys
(a masked band: memrl computes the dilated window as a mask, so its cost grows with
``window * max(d)``, not ``window``, unlike Longformer's custom kernel).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from memrl.models.attention import (
    EpisodeWindow,
    FeedForward,
    RelativeBiases,
    RelativeWindowAttention,
    WindowCore,
)


class LocalXLLayer(nn.Module):
    """Pre-LayerNorm residual block: ``h += Attn(LN([sg(M); h]), LN(g));  h += FF(LN(h))``,
    ``g`` the layer's learned global tokens [G, d] (G may be 0)."""

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        kv_heads: int,
        d_ff: int,
        biases: RelativeBiases,
        dilations: tuple[int, ...],
        window: int,
        num_global: int,
    ) -> None:
        super().__init__()
        self.attention_norm = nn.LayerNorm(d_model)
        self.attention = RelativeWindowAttention(
            d_model, num_heads, kv_heads, biases, dilations=dilations, dilated_window=window
        )
        self.global_tokens = nn.Parameter(torch.randn(num_global, d_model)) if num_global else None
        self.feed_forward_norm = nn.LayerNorm(d_model)
        self.feed_forward = FeedForward(d_model, d_ff)

    def forward(self, h: Tensor, memory: Tensor, window: EpisodeWindow) -> Tensor:
        """h [B, T, d], memory [B, M, d] (already detached) -> [B, T, d]."""
        keys = self.attention_norm(torch.cat([memory, h], dim=1))
        global_keys = None
        if self.global_tokens is not None:
            global_keys = self.attention_norm(self.global_tokens.to(h.dtype))
        h = h + self.attention(keys[:, window.memory_len :], keys, window, global_keys)
        return h + self.feed_forward(self.feed_forward_norm(h))


def default_dilations(num_heads: int) -> tuple[int, ...]:
    """``1, 1, 2, 4, 8, ..``: two local heads, then doubling (``(1, 1, 2, 4)`` for 4 heads)."""
    return tuple(2 ** max(h - 1, 0) for h in range(num_heads))


class LocalXLCore(WindowCore):
    """Longformer-style dilated sliding windows and global tokens with XL memory.

    Args (keyword-only):
        d_model: residual width (128, same RL scale as the trxl/gtrxl defaults).
        num_layers: blocks (4).
        num_heads: query heads (4).
        window: w, keys each head sees before its query (64, as trxl's memory_len; Longformer
            used 512 tokens for text).
        dilations: one dilation per head (None = ``default_dilations``: 1, 1, 2, 4, ..).
        num_global: learned global tokens per layer that every query attends to (0 = none).
        d_ff: feed-forward width (512, 4x d_model).
        kv_heads: K/V heads for grouped/multi-query attention (None = num_heads).
        block: queries per attention block (None = window; any positive value gives the same
            result, only cost and memory change).

    State: trxl's window state with ``memory_len = window * max(dilations)``. Pre-LayerNorm
    blocks (TrXL-I ordering, Parisotto et al. 2020, stable without warm-up) with a final
    LayerNorm; window rule and shared u, v as trxl. Output: [B, T, d_model]. Raises ValueError
    like trxl, and for dilations of the wrong length or non-positive entries, or a negative
    num_global.
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
        dilations: Sequence[int] | None = None,
        num_global: int = 0,
        d_ff: int = 512,
        kv_heads: int | None = None,
        block: int | None = None,
    ) -> None:
        if not isinstance(window, int) or isinstance(window, bool) or window <= 0:
            raise ValueError(f"window must be a positive int, got {window!r}")
        if not isinstance(num_heads, int) or num_heads <= 0:
            raise ValueError(f"num_heads must be a positive int, got {num_heads!r}")
        dil = default_dilations(num_heads) if dilations is None else tuple(dilations)
        bad_dilations = ValueError(
            f"dilations must be {num_heads} positive ints (one per head), got {dilations!r}"
        )
        if not dil or any(isinstance(d, bool) or not isinstance(d, int) or d <= 0 for d in dil):
            raise bad_dilations
        if isinstance(num_global, bool) or not isinstance(num_global, int) or num_global < 0:
            raise ValueError(f"num_global must be a non-negative int, got {num_global!r}")
        super().__init__(
            input_dim,
            d_model=d_model,
            num_layers=num_layers,
            num_heads=num_heads,
            memory_len=window * max(dil),
            d_ff=d_ff,
            kv_heads=kv_heads,
            memory_name="window",
        )
        if len(dil) != num_heads:  # checked after the base class's checks of the head sizes
            raise bad_dilations
        block = window if block is None else block
        if not isinstance(block, int) or block <= 0:
            raise ValueError(f"block must be a positive int or None, got {block!r}")
        self.window, self.dilations, self.num_global, self.block = window, dil, num_global, block
        self.layers.extend(
            LocalXLLayer(
                d_model,
                num_heads,
                self.kv_heads,
                d_ff,
                self.relative_biases,
                dil,
                window,
                num_global,
            )
            for _ in range(num_layers)
        )
        self.out_norm = nn.LayerNorm(d_model)

    def block_size(self, steps: int) -> int:
        """``min(block, T)``: a single step (acting) costs one query against M + 1 keys."""
        return min(self.block, steps)
