"""Relative-position sliding-window attention over ``[memory; segment]`` for the window cores.

The window rule (see ``window.py``): step ``t`` attends to itself and to the previous ``M`` steps
of its own episode, no more, whether the steps arrive in one call or one at a time. Keys are the
concatenation ``[memory (M slots, oldest first); segment (T steps)]``; query ``i`` sits at key
position ``M + i``, so key ``j`` is at relative distance ``d = M + i - j`` and is allowed iff

    0 <= d <= M   and   episode(j) == episode(i)   and   key j is valid,

with episode ids ``cumsum(first)`` over the segment and 0 for memory slots, which count only
where ``memory_mask`` is True. The key at ``d = 0`` is the query itself, so no row is ever fully
masked (softmax over all ``-inf`` would give NaN).

Scores follow Transformer-XL (Dai et al. 2019, Sec. 3.3): with content bias ``u`` and position
bias ``v`` per head, ``A_ij = (q_i + u) . k_j + (q_i + v) . W_R R_{i-j}``, ``R`` sinusoidal. The
first term is the ``Q K^T`` of ``torch.nn.functional.scaled_dot_product_attention`` (query
``q + u``); the second enters as an additive float ``attn_mask`` (pre-multiplied by the softmax
scale, with ``-inf`` where the rule forbids a key).

SDPA kernels: a float ``attn_mask`` rules out the flash kernel, so on CUDA SDPA runs the
memory-efficient kernel (or cuDNN attention where it accepts the mask, else math); on CPU the
math or the flash-CPU kernel. ``enable_gqa`` is not used because, in the torch versions we target,
only flash accepts it; grouped K/V heads are expanded to the query heads instead (a zero-stride
view when ``kv_heads == 1``), which the fused kernels accept.

Computation is blocked: queries are cut into blocks of ``block`` steps and block ``c`` sees keys
``[c*block, c*block + M + block)``, i.e. ``M + block`` keys. ``block = T`` gives one block (the
full ``T x (M+T)`` score matrix, as trxl/gtrxl use); ``block = M`` gives Longformer-style local
attention in ``O(T * M)`` (local_xl).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from memrl.models.base import MemoryCore, State, StateSpec
from memrl.models.window import episode_index


def sinusoid_positions(
    length: int, dim: int, *, dtype: torch.dtype, device: torch.device
) -> Tensor:
    """Sinusoidal encodings ``[length, dim]`` of distances ``0 .. length-1`` (Vaswani et al. 2017).

    First half sines, second half cosines, frequencies ``10000^(-2k/dim)``; ``dim`` must be even.
    """
    inv_freq = 1.0 / (10000 ** (torch.arange(0, dim, 2, device=device, dtype=torch.float64) / dim))
    angle = torch.arange(length, device=device, dtype=torch.float64)[:, None] * inv_freq[None]
    return torch.cat([angle.sin(), angle.cos()], dim=-1).to(dtype)


@dataclass(frozen=True)
class EpisodeWindow:
    """Which key each query of one call may see, computed once per call and shared by the layers.

    query_episode: [B, T] long, ``cumsum(first)`` over the segment.
    key_episode:   [B, M+T] long, 0 for memory slots, then ``query_episode``.
    key_valid:     [B, M+T] bool, ``memory_mask`` for memory slots, True for segment steps.
    block:         queries per attention block.
    allowed:       [B, n, block, M+block] bool, n = ceil(T / block): may query i of block c
                   attend to key ``c*block + j``?
    """

    query_episode: Tensor
    key_episode: Tensor
    key_valid: Tensor
    memory_len: int
    block: int
    allowed: Tensor

    @classmethod
    def build(cls, first: Tensor, memory_mask: Tensor, block: int) -> EpisodeWindow:
        """From ``first`` [B, T] bool, ``memory_mask`` [B, M] bool and the block size."""
        memory, steps = memory_mask.shape[1], first.shape[1]
        query = episode_index(first)
        key = torch.cat([torch.zeros_like(memory_mask, dtype=query.dtype), query], 1)
        valid = torch.cat([memory_mask, torch.ones_like(first)], 1)
        # Padding steps past T get episode -1: each sees itself (so no row is all -inf) and no
        # real step sees them (they lie in its future).
        pad = -steps % block
        padded_query = rearrange(F.pad(query, (0, pad), value=-1), "b (n i) -> b n i", i=block)
        padded_key = F.pad(key, (0, pad), value=-1).unfold(1, memory + block, block)
        padded_valid = F.pad(valid, (0, pad), value=True).unfold(1, memory + block, block)
        distance = relative_distance(block, memory, first.device)
        band = (distance >= 0) & (distance <= memory)  # [block, M+block]
        same_episode = padded_query[..., :, None] == padded_key[..., None, :]
        allowed = band & same_episode & padded_valid[..., None, :]
        return cls(query, key, valid, memory, block, allowed)

    def next_memory_mask(self) -> Tensor:
        """Validity [B, M] of the last M keys after the call: same episode as the last step."""
        same = self.key_episode == self.query_episode[:, -1:]
        return (self.key_valid & same)[:, -self.memory_len :]


def relative_distance(block: int, memory: int, device: torch.device) -> Tensor:
    """``d[i, j] = M + i - j`` [block, M+block]: distance from query i to key j inside a block."""
    return (
        memory
        + torch.arange(block, device=device)[:, None]
        - torch.arange(memory + block, device=device)[None, :]
    )


class RelativeBiases(nn.Module):
    """Transformer-XL's content bias ``u`` and position bias ``v`` [H, e], zero at init.

    One instance is shared by every layer of a core, as in Transformer-XL and the GTrXL
    references (DI-engine, agalite): the biases are a per-head preference for content and for
    recency, not a per-layer feature.
    """

    def __init__(self, num_heads: int, head_dim: int) -> None:
        super().__init__()
        self.content = nn.Parameter(torch.zeros(num_heads, head_dim))  # u
        self.position = nn.Parameter(torch.zeros(num_heads, head_dim))  # v


class RelativeWindowAttention(nn.Module):
    """Multi-head (or grouped-query) attention with Transformer-XL relative positions.

    ``kv_heads`` K/V heads are shared by groups of ``num_heads // kv_heads`` query heads (query
    head ``h`` uses K/V head ``h // group``). The position projection ``W_R`` has ``num_heads``
    heads: it acts on M+1 encodings shared by the batch, so sharing it would save nothing.
    ``biases``: the (shared) ``u``, ``v``; None makes a private pair.

    ``dilations`` (one int per head, with ``dilated_window`` w): head ``h`` sees only keys at
    distances ``0, d_h, 2 d_h, .., w d_h`` (Longformer's dilated sliding window), on top of the
    window rule; None = every distance the window rule allows.
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        kv_heads: int,
        biases: RelativeBiases | None = None,
        dilations: tuple[int, ...] | None = None,
        dilated_window: int | None = None,
    ) -> None:
        super().__init__()
        self.num_heads, self.kv_heads = num_heads, kv_heads
        self.head_dim = d_model // num_heads
        # Bias-free projections as in Transformer-XL.
        self.query = nn.Linear(d_model, num_heads * self.head_dim, bias=False)
        self.key_value = nn.Linear(d_model, 2 * kv_heads * self.head_dim, bias=False)
        self.position = nn.Linear(d_model, num_heads * self.head_dim, bias=False)
        self.out = nn.Linear(num_heads * self.head_dim, d_model, bias=False)
        self.biases = RelativeBiases(num_heads, self.head_dim) if biases is None else biases
        if dilations is not None and (len(dilations) != num_heads or dilated_window is None):
            raise ValueError("dilations needs one entry per head and a dilated_window")
        self.dilations, self.dilated_window = dilations, dilated_window

    @property
    def content_bias(self) -> nn.Parameter:
        return self.biases.content

    @property
    def position_bias(self) -> nn.Parameter:
        return self.biases.position

    def head_mask(self, distance: Tensor) -> Tensor | None:
        """[H, *distance.shape] bool: may head h use a key at ``distance``? None = all may."""
        if self.dilations is None:
            return None
        dil = torch.tensor(self.dilations, device=distance.device).view(-1, *[1] * distance.dim())
        return (distance % dil == 0) & (distance <= self.dilated_window * dil)

    def forward(
        self,
        queries: Tensor,
        keys: Tensor,
        window: EpisodeWindow,
        global_keys: Tensor | None = None,
    ) -> Tensor:
        """queries [B, T, d] (the segment), keys [B, M+T, d] ([memory; segment]) -> [B, T, d].

        ``global_keys`` [G, d]: extra keys every query may see, with a content score only (no
        position term); None = none.
        """
        batch, steps, _ = queries.shape
        memory, block = window.memory_len, window.block
        pad = -steps % block
        q = rearrange(self.query(queries), "b t (h e) -> b h t e", h=self.num_heads)
        k, v = rearrange(
            self.key_value(keys), "b s (two h e) -> two b h s e", two=2, h=self.kv_heads
        )
        encodings = sinusoid_positions(
            memory + 1,
            self.position.in_features,
            dtype=self.position.weight.dtype,
            device=queries.device,
        )
        r = rearrange(self.position(encodings), "n (h e) -> h n e", h=self.num_heads)
        scale = 1.0 / math.sqrt(self.head_dim)
        # Position term (q_i + v) . r_d for every distance d in [0, M]: [B, H, T, M+1].
        position = torch.einsum("bhte,hne->bhtn", q + self.position_bias[:, None], r) * scale
        # Adding the fp32 biases promotes q under autocast; SDPA needs q, k, v in one dtype.
        q = (q + self.content_bias[:, None]).to(k.dtype)

        # Cut into blocks; block c sees keys [c*block, c*block + M + block).
        q = rearrange(F.pad(q, (0, 0, 0, pad)), "b h (n i) e -> (b n) h i e", i=block)
        k, v = (
            rearrange(
                F.pad(x, (0, 0, 0, pad)).unfold(2, memory + block, block),
                "b h n e j -> (b n) h j e",
            )
            for x in (k, v)
        )
        position = rearrange(F.pad(position, (0, 0, 0, pad)), "b h (n i) d -> b h n i d", i=block)
        raw_distance = relative_distance(block, memory, queries.device)
        distance = raw_distance.clamp(0, memory)
        bias = position.gather(-1, distance.expand(*position.shape[:-1], memory + block))
        allowed = window.allowed[:, None]  # [B, 1, n, block, M+block]
        heads_allowed = self.head_mask(raw_distance)  # [H, block, M+block]: dilated windows
        if heads_allowed is not None:
            allowed = allowed & heads_allowed[None, :, None]
        bias = rearrange(bias.masked_fill(~allowed, float("-inf")), "b h n i j -> (b n) h i j")
        if global_keys is not None:
            kg, vg = rearrange(
                self.key_value(global_keys), "g (two h e) -> two h g e", two=2, h=self.kv_heads
            )
            k, v = (
                torch.cat([x, g.to(x.dtype).expand(x.shape[0], -1, -1, -1)], dim=2)
                for x, g in ((k, kg), (v, vg))
            )
            bias = F.pad(bias, (0, global_keys.shape[0]), value=0.0)

        group = self.num_heads // self.kv_heads
        k, v = (
            x[:, :, None].expand(-1, -1, group, -1, -1).reshape(*q.shape[:2], *x.shape[2:])
            for x in (k, v)
        )
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(k.dtype), scale=scale)
        out = rearrange(out, "(b n) h i e -> b (n i) (h e)", b=batch)[:, :steps]
        return self.out(out)


class FeedForward(nn.Sequential):
    """Position-wise MLP ``Linear(d, d_ff) -> ReLU -> Linear(d_ff, d)``."""

    def __init__(self, d_model: int, d_ff: int) -> None:
        super().__init__(nn.Linear(d_model, d_ff), nn.ReLU(), nn.Linear(d_ff, d_model))


class WindowCore(MemoryCore):
    """Shared body of the attention-window cores: input projection, layer loop, window state.

    Subclasses fill ``self.layers`` with modules called as ``layer(h, memory, window)``
    (h [B, T, d], memory [B, M, d] detached, returns [B, T, d]), whose attention uses the shared
    ``self.relative_biases``, and may set ``self.out_norm`` and ``embedding_relu`` (a ReLU after
    the input projection).
    State: ``{"memory": [B, layers, M, d], "memory_mask": [B, M]}``, each layer's inputs of the
    last M steps of the current episode, oldest first, invalid slots exactly zero.
    """

    def __init__(
        self,
        input_dim: int,
        *,
        d_model: int,
        num_layers: int,
        num_heads: int,
        memory_len: int,
        d_ff: int,
        kv_heads: int | None,
        memory_name: str = "memory_len",
    ) -> None:
        super().__init__(input_dim)
        kv_heads = num_heads if kv_heads is None else kv_heads
        sizes = dict(
            d_model=d_model,
            num_layers=num_layers,
            num_heads=num_heads,
            d_ff=d_ff,
            kv_heads=kv_heads,
            **{memory_name: memory_len},
        )
        for key, value in sizes.items():
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"{key} must be a positive int, got {value!r}")
        if d_model % num_heads or (d_model // num_heads) % 2:
            raise ValueError(
                f"d_model must be a multiple of num_heads with an even head size, got "
                f"d_model={d_model}, num_heads={num_heads}"
            )
        if num_heads % kv_heads:
            raise ValueError(f"kv_heads must divide num_heads={num_heads}, got {kv_heads}")
        self.d_model, self.num_layers, self.num_heads = d_model, num_layers, num_heads
        self.kv_heads, self.memory_len, self.d_ff = kv_heads, memory_len, d_ff
        self.input_proj = nn.Linear(input_dim, d_model)
        # u, v shared by every layer's attention (pass to the layers' constructors).
        self.relative_biases = RelativeBiases(num_heads, d_model // num_heads)
        self.layers = nn.ModuleList()
        self.out_norm: nn.Module = nn.Identity()
        self.output_dim = d_model

    embedding_relu: ClassVar[bool] = False

    def block_size(self, steps: int) -> int:
        """Queries per attention block; the whole segment by default (one full score matrix)."""
        return steps

    def state_spec(self) -> dict[str, StateSpec]:
        shape = (self.num_layers, self.memory_len, self.d_model)
        return {"memory": StateSpec("window", shape, self.state_dtype)}

    def _run(self, x: Tensor, state: State, first: Tensor) -> tuple[Tensor, State, Tensor]:
        """Returns (y [B, T, d], next state, per-step layer inputs [B, T, layers, d])."""
        memory = state["memory"].detach()  # stop-gradient into memory (GTrXL, Sec. 3)
        window = EpisodeWindow.build(first, state["memory_mask"], self.block_size(x.shape[1]))
        h = self.input_proj(x)
        if self.embedding_relu:
            h = F.relu(h)
        inputs = []
        for index, layer in enumerate(self.layers):
            inputs.append(h)
            h = layer(h, memory[:, index].to(h.dtype), window)
        layer_inputs = torch.stack(inputs, dim=2).detach()  # [B, T, layers, d]

        mask = window.next_memory_mask()
        keys = torch.cat([memory, layer_inputs.transpose(1, 2).to(memory.dtype)], dim=2)
        next_memory = torch.where(mask[:, None, :, None], keys[:, :, -self.memory_len :], 0.0)
        return self.out_norm(h), {"memory": next_memory, "memory_mask": mask}, layer_inputs

    def _forward(self, x: Tensor, state: State, first: Tensor) -> tuple[Tensor, State]:
        y, state, _ = self._run(x, state, first)
        return y, state

    def step_slices(
        self, x: Tensor, state: State | None, first: Tensor | None
    ) -> dict[str, Tensor]:
        """``{"memory": [B, T, layers, d]}``: each step's per-layer inputs (what replay stores)."""
        state, first = self._checked_inputs(x, state, first)
        _, _, layer_inputs = self._run(x, state, first)
        return {"memory": layer_inputs.to(self.state_dtype)}
