"""Block-Recurrent Transformer core (Hutchins et al. 2022, "Block-Recurrent Transformers").

The sequence is cut into blocks of ``W = block_len`` steps; a new block also starts at every
episode start. Inside a block, every layer attends causally to the block's earlier steps (with a
learned per-head relative-position bias, T5-style). The *recurrent* layers also carry ``S =
num_state`` state vectors:

* vertical direction (tokens): self-attention over the block and cross-attention to the state
  vectors, concatenated and projected, then a residual MLP (a plain pre-LN transformer layer);
* horizontal direction (state, only at the end of a complete block): self-attention over the
  state vectors and cross-attention to all ``W`` steps of the block, concatenated and projected,
  then an MLP; both are combined with the old state through gates instead of residuals::

      fixed gate:  c' = c * sigmoid(b_g) + (W_z h + b_z) * (1 - sigmoid(b_g))
      lstm gate:   c' = c * sigmoid(W_f h + b_f + 1) + tanh(W_z h + b_z) * sigmoid(W_i h + b_i - 1)

  Keys and values of the block and of the state are shared by both directions. Learned state IDs
  are added to the state vectors before they are projected (the vectors are otherwise
  interchangeable).

Which layers recur (``recurrent_layers``): by default one, the second from the top, as the paper
places its single recurrent layer at layer 10 of 12; the layers around it are plain block-local
transformer layers. Any set of layers may recur (e.g. every layer); each runs its own scan.

Simplification against the paper: tokens attend only within their own block (the paper also
attends to the previous block through a sliding window with a KV cache); information older than
the block reaches a token only through the state vectors, which keeps the state a fixed size.

State (all ``carry``, so a replay stores it whole at every step):

* ``state`` ``[R, S, d]``: the state vectors of the R recurrent layers (zero after a reset; the
  state IDs are added inside), changed only at the end of a complete block or by ``first``;
* ``block`` ``[layers, W-1, d]``: the per-layer inputs of the steps of the current, unfinished
  block, right-aligned (the newest step in the last slot), zeros elsewhere: what lets one step at
  a time equal a whole-block call;
* ``pos`` ``[1]``: how many steps of the current block are done (0 .. W-1), stored as a float.

So a stored step costs ``(R*S + layers*(W-1) + 1/d) * d`` numbers: with d=128, 4 layers, W=S=16
and one recurrent layer that is 77 slots * 128 * 4 B, about 38.5 KiB (fp32).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from memrl.models.base import MemoryCore, State, StateSpec

GATES = ("fixed", "lstm")


class _Gate(nn.Module):
    """Combine the old state ``c`` with a new candidate ``h`` (both [..., d]) per the paper."""

    def __init__(self, d: int, kind: str) -> None:
        super().__init__()
        self.kind = kind
        if kind == "fixed":
            self.candidate = nn.Linear(d, d)
            # sigmoid(1) ~ 0.73: start by keeping most of the old state, as an LSTM forget bias.
            self.keep_bias = nn.Parameter(torch.ones(d))
        else:
            self.proj = nn.Linear(d, 3 * d)

    def forward(self, c: Tensor, h: Tensor) -> Tensor:
        if self.kind == "fixed":
            keep = torch.sigmoid(self.keep_bias)
            return c * keep + self.candidate(h) * (1 - keep)
        z, i, f = self.proj(h).chunk(3, dim=-1)
        # The -1 / +1 offsets bias the gates toward remembering at initialization.
        return c * torch.sigmoid(f + 1) + torch.tanh(z) * torch.sigmoid(i - 1)


def _mlp(d: int, d_ff: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d, d_ff), nn.GELU(), nn.Linear(d_ff, d))


class _BlockLayer(nn.Module):
    """One pre-LN layer attending within the block; recurrent ones also read/write the state."""

    def __init__(
        self, d: int, heads: int, block_len: int, d_ff: int, num_state: int, gate: str | None
    ) -> None:
        super().__init__()
        self.heads = heads
        self.recurrent = gate is not None
        self.norm = nn.LayerNorm(d)
        self.query = nn.Linear(d, d)
        self.key_value = nn.Linear(d, 2 * d)
        # Learned bias per head and distance 0..W-1 inside the block.
        self.rel_bias = nn.Parameter(torch.zeros(heads, block_len))
        self.norm_ff = nn.LayerNorm(d)
        self.ff = _mlp(d, d_ff)
        if not self.recurrent:
            self.out = nn.Linear(d, d)
            return
        self.out = nn.Linear(2 * d, d)  # [self-attention ; cross-attention to the state]
        self.query_cross = nn.Linear(d, d)
        self.state_ids = nn.Parameter(torch.randn(num_state, d) * d**-0.5)
        self.state_norm = nn.LayerNorm(d)
        self.state_key_value = nn.Linear(d, 2 * d)
        self.state_query_self = nn.Linear(d, d)
        self.state_query_cross = nn.Linear(d, d)
        self.state_out = nn.Linear(2 * d, d)
        self.state_gate = _Gate(d, gate)
        self.state_norm_ff = nn.LayerNorm(d)
        self.state_ff = _mlp(d, d_ff)
        self.state_ff_gate = _Gate(d, gate)

    def _heads(self, t: Tensor) -> Tensor:
        return rearrange(t, "b n (h e) -> b h n e", h=self.heads)

    def self_bias(self, distance: Tensor, allowed: Tensor, dtype: torch.dtype) -> Tensor:
        """Float attention mask [B, H, T, N]: relative bias where ``allowed``, -inf elsewhere."""
        bias = self.rel_bias[:, distance].to(dtype)  # [H, T, N]
        return bias.unsqueeze(0).masked_fill(~allowed.unsqueeze(1), float("-inf"))

    def state_projections(self, c: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Queries (self, cross), keys, values of state ``c`` [B, S, d], each [B, H, S, e]."""
        cn = self.state_norm(c + self.state_ids)
        key, value = self.state_key_value(cn).chunk(2, dim=-1)
        return (
            self._heads(self.state_query_self(cn)),
            self._heads(self.state_query_cross(cn)),
            self._heads(key),
            self._heads(value),
        )

    def update_state(
        self,
        c: Tensor,
        proj: tuple[Tensor, Tensor, Tensor, Tensor],
        block_kv: tuple[Tensor, Tensor],
    ) -> Tensor:
        """Horizontal direction: the state after a complete block (keys/values [B, H, W, e])."""
        q_self, q_cross, key, value = proj
        a_self = F.scaled_dot_product_attention(q_self, key, value)
        a_cross = F.scaled_dot_product_attention(q_cross, *block_kv)
        # Per head [self ; cross]; the projection that follows is free to mix them.
        attended = rearrange(torch.cat([a_self, a_cross], dim=-1), "b h s e -> b s (h e)")
        c = self.state_gate(c, self.state_out(attended))
        return self.state_ff_gate(c, self.state_ff(self.state_norm_ff(c)))

    def forward(
        self,
        ext: Tensor,
        self_allowed: Tensor,
        distance: Tensor,
        scan: _Scan | None,
    ) -> Tensor:
        """ext [B, P+T, d]: the unfinished block's stored inputs then this call's inputs.

        Returns the outputs [B, T, d] of the last T steps. ``scan`` (recurrent layers only)
        supplies the state vectors each step reads.
        """
        steps = distance.shape[0]
        h = ext[:, -steps:]
        normed = self.norm(ext)
        key, value = (self._heads(t) for t in self.key_value(normed).chunk(2, dim=-1))
        query = self._heads(self.query(normed[:, -steps:]))
        bias = self.self_bias(distance, self_allowed, query.dtype)
        attended = F.scaled_dot_product_attention(query, key, value, attn_mask=bias)
        if self.recurrent:
            assert scan is not None
            states = scan.run(self, key, value)
            attended = torch.cat([attended, states.cross_attend(self, normed[:, -steps:])], -1)
        attended = rearrange(attended, "b h t e -> b t (h e)")
        h = h + self.out(attended)
        return h + self.ff(self.norm_ff(h))


class _BlockStates:
    """Keys/values [B, H, K*S, e] of the state vectors at the start of each of the K blocks of a
    call, and which of them each step may read (``allowed`` [B, T, K*S]: its own block's)."""

    def __init__(self, keys: Tensor, values: Tensor, allowed: Tensor) -> None:
        self.keys, self.values, self.allowed = keys, values, allowed

    def cross_attend(self, layer: _BlockLayer, normed_steps: Tensor) -> Tensor:
        """Each step attends to the state vectors of its own block: [B, H, T, e]."""
        query = layer._heads(layer.query_cross(normed_steps))
        mask = self.allowed.unsqueeze(1)  # [B, 1, T, K*S]
        return F.scaled_dot_product_attention(query, self.keys, self.values, attn_mask=mask)


class _Scan:
    """The block structure of one call, shared by every recurrent layer's scan over blocks."""

    def __init__(
        self,
        block: Tensor,
        end_step: Tensor,
        reset: Tensor,
        carried: Tensor,
        block_len: int,
    ) -> None:
        self.block = block  # [B, T] block index of each step (0 = the carried, unfinished block)
        self.end_step = end_step  # [B, K] step that completes block k, -1 if none in this call
        self.reset = reset  # [B, K] block k starts an episode
        self.carried = carried  # [B, R, S, d] state vectors at the start of the call
        self.block_len = block_len
        self.finals: list[Tensor] = []

    def run(self, layer: _BlockLayer, key: Tensor, value: Tensor) -> _BlockStates:
        """Scan the layer's state over the call's blocks; key/value [B, H, P+T, e]."""
        num_blocks = self.end_step.shape[1]
        complete = self.end_step >= 0
        # Extended-sequence positions of the W steps of block k end at P + end_step: they start
        # at end_step (P = W-1). Incomplete blocks gather a harmless in-range stand-in.
        index = self.end_step.clamp(min=0).unsqueeze(-1) + torch.arange(
            self.block_len, device=key.device
        )  # [B, K, W]
        c = self.carried[:, len(self.finals)]
        keys, values = [], []
        for k in range(num_blocks):
            proj = layer.state_projections(c)
            keys.append(proj[2])
            values.append(proj[3])
            nxt = c
            if bool(complete[:, k].any()):
                gather = (
                    index[:, k]
                    .view(-1, 1, self.block_len, 1)
                    .expand(-1, key.shape[1], -1, key.shape[-1])
                )
                block_kv = (key.gather(2, gather), value.gather(2, gather))
                updated = layer.update_state(c, proj, block_kv)
                nxt = torch.where(complete[:, k].view(-1, 1, 1), updated, c)
            if k + 1 < num_blocks:
                nxt = torch.where(self.reset[:, k + 1].view(-1, 1, 1), torch.zeros_like(nxt), nxt)
            c = nxt
        self.finals.append(c)
        num_state = c.shape[1]
        key_of = torch.arange(num_blocks, device=key.device).repeat_interleave(num_state)
        allowed = self.block.unsqueeze(-1) == key_of  # [B, T, K*S]
        return _BlockStates(torch.cat(keys, 2), torch.cat(values, 2), allowed)


class BlockRecurrentCore(MemoryCore):
    """Block-Recurrent Transformer; state ``state`` [R, S, d], ``block`` [L, W-1, d], ``pos`` [1].

    Input x [B, T, input_dim] -> Linear(input_dim, d_model) -> layers -> LayerNorm; output
    [B, T, d_model]. Raises ValueError on a non-positive size, ``d_model`` not divisible by
    ``num_heads``, an unknown ``gate`` or an out-of-range ``recurrent_layers`` entry.
    """

    name = "brt"

    def __init__(
        self,
        input_dim: int,
        *,
        d_model: int = 128,
        num_layers: int = 4,
        num_heads: int = 4,
        block_len: int = 16,
        num_state: int = 16,
        d_ff: int = 512,
        gate: str = "fixed",
        recurrent_layers: Sequence[int] | None = None,
    ) -> None:
        super().__init__(input_dim)
        sizes = dict(
            d_model=d_model,
            num_layers=num_layers,
            num_heads=num_heads,
            block_len=block_len,
            num_state=num_state,
            d_ff=d_ff,
        )
        for key, value in sizes.items():
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"{key} must be a positive int, got {value!r}")
        if d_model % num_heads:
            raise ValueError(f"d_model={d_model} must be divisible by num_heads={num_heads}")
        if gate not in GATES:
            raise ValueError(f"gate must be one of {GATES}, got {gate!r}")
        if recurrent_layers is None:
            recurrent_layers = (max(num_layers - 2, 0),)
        recurrent = tuple(sorted(set(int(i) for i in recurrent_layers)))
        if not recurrent or any(not 0 <= i < num_layers for i in recurrent):
            raise ValueError(
                f"recurrent_layers must be a non-empty list of layer indices in "
                f"[0, {num_layers - 1}], got {list(recurrent_layers)!r}"
            )
        self.d_model, self.num_layers, self.block_len, self.num_state = (
            d_model,
            num_layers,
            block_len,
            num_state,
        )
        self.recurrent_layers = recurrent
        self.in_proj = nn.Linear(input_dim, d_model)
        self.layers = nn.ModuleList(
            _BlockLayer(
                d_model, num_heads, block_len, d_ff, num_state, gate if i in recurrent else None
            )
            for i in range(num_layers)
        )
        self.out_norm = nn.LayerNorm(d_model)
        self.output_dim = d_model

    def state_spec(self) -> dict[str, StateSpec]:
        dtype = self.state_dtype
        return {
            "state": StateSpec(
                "carry", (len(self.recurrent_layers), self.num_state, self.d_model), dtype
            ),
            "block": StateSpec("carry", (self.num_layers, self.block_len - 1, self.d_model), dtype),
            "pos": StateSpec("carry", (1,), dtype),
        }

    def _forward(self, x: Tensor, state: State, first: Tensor) -> tuple[Tensor, State]:
        batch, steps = x.shape[:2]
        width, held = self.block_len, self.block_len - 1
        device = x.device
        t = torch.arange(steps, device=device)
        # Steps already done in the unfinished block; rounding tolerates a state stored in
        # reduced precision. An episode start at step 0 discards the block.
        done = state["pos"][:, 0].round().clamp(0, held).long()
        done = torch.where(first[:, 0], torch.zeros_like(done), done)
        # Position of each step in its block: counted from the last episode start in this call,
        # else continuing the carried block.
        last_first = torch.where(first, t, torch.full_like(t, -1)).cummax(dim=1).values
        pos = torch.where(last_first >= 0, t - last_first, done.unsqueeze(1) + t) % width
        block = (pos == 0).long().cumsum(dim=1)  # [B, T]; block 0 continues the carried one
        num_blocks = int(block.max()) + 1

        # Extended sequence: W-1 held slots (valid: the last `done` ones) then the T steps.
        slot = torch.arange(held, device=device)
        held_block = torch.where(slot >= held - done.unsqueeze(1), 0, -1)  # [B, P]
        ext_block = torch.cat([held_block, block], dim=1)  # [B, P+T]
        ext_pos = torch.arange(held + steps, device=device)
        query_pos = held + t
        distance = (query_pos.unsqueeze(1) - ext_pos).clamp(0, width - 1)  # [T, P+T]
        self_allowed = (ext_block.unsqueeze(1) == block.unsqueeze(2)) & (
            ext_pos <= query_pos.unsqueeze(1)
        )  # [B, T, P+T]

        is_end = pos == width - 1
        end_step = _scatter_per_block(is_end, block, t.expand(batch, steps), num_blocks, -1)
        reset = _scatter_per_block(first, block, torch.ones_like(block), num_blocks, 0).bool()
        scan = _Scan(block, end_step, reset, state["state"], width)

        h = self.in_proj(x)
        held_inputs = state["block"].to(h.dtype)
        new_held = []
        for i, layer in enumerate(self.layers):
            ext = torch.cat([held_inputs[:, i], h], dim=1)
            new_held.append(ext[:, ext.shape[1] - held :])
            h = layer(ext, self_allowed, distance, scan if layer.recurrent else None)
        y = self.out_norm(h)

        done_after = (pos[:, -1] + 1) % width
        keep = (slot >= held - done_after.unsqueeze(1)).view(batch, 1, held, 1)
        dtype = self.state_dtype
        held_state = torch.stack(new_held, dim=1)
        new_state = {
            "state": torch.stack(scan.finals, dim=1).to(dtype),
            "block": torch.where(keep, held_state, torch.zeros_like(held_state)).to(dtype),
            "pos": done_after.to(dtype).unsqueeze(1),
        }
        return y, new_state


def _scatter_per_block(
    flag: Tensor, block: Tensor, value: Tensor, num_blocks: int, fill: int
) -> Tensor:
    """[B, K] holding ``value`` at the (single) step of each block where ``flag``, else ``fill``."""
    out = torch.full((block.shape[0], num_blocks + 1), fill, dtype=torch.long, device=block.device)
    # Unflagged steps go to a spare column that is dropped.
    out.scatter_(1, torch.where(flag, block, num_blocks), value)
    return out[:, :num_blocks]
