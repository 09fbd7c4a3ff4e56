"""Block-Recurrent Transformer core (Hutchins et al. 2022, "Block-Recurrent Transformers").

The sequence is cut into blocks of ``W = block_len`` steps; a new block also starts at every
episode start. Every layer uses sliding-window attention: a step attends to all ``W`` steps of
the previous block and causally to its own block up to itself (the paper's keys/values cache of
the previous block; google-research/meliad ``concat_kvqi``, lucidrains'
block-recurrent-transformer-pytorch), within its episode, with a learned per-head bias for each
distance ``0 .. 2W-1`` (T5-style). The *recurrent* layers also carry ``S = num_state`` state
vectors:

* vertical direction (tokens): self-attention over the window and cross-attention to the state
  vectors (as they were at the start of the step's block), concatenated per head and projected,
  then a residual MLP (a pre-LN transformer layer);
* horizontal direction (state, only at the end of a complete block): self-attention over the
  state vectors and cross-attention to the ``W`` steps of the block, concatenated and projected,
  then an MLP; both are combined with the old state through gates instead of residuals::

      fixed gate:  c' = c * sigmoid(b_g) + (W_z h + b_z) * (1 - sigmoid(b_g))
      lstm gate:   c' = c * sigmoid(W_f h + b_f + 1) + tanh(W_z h + b_z) * sigmoid(W_i h + b_i - 1)

  Keys and values of the block and of the state are shared by both directions. Learned state IDs
  (N(0, 1)) are added to the state vectors *after* their pre-attention LayerNorm, as in both
  references (the vectors are otherwise interchangeable). An episode starts from a learned
  initial state (N(0, 0.1)) per recurrent layer.

Which layers recur (``recurrent_layers``, Python indices, negative ones counted from the top): by
default ``-3``, the third layer from the top, since the paper places its single recurrent layer
at layer 10 of 12 (1-based; index 9 = -3); with fewer than 3 layers, layer 0. The other layers
are plain sliding-window transformer layers. Any set of layers may recur; each runs its own scan.

State (all ``carry``, so a replay stores it whole at every step):

* ``state`` ``[R, S, d]``: the state vectors of the R recurrent layers after the episode's last
  complete block (zeros while the episode has none: the learned initial state is then used),
  changed only at the end of a complete block or by ``first``;
* ``block`` ``[layers, 2W-1, d]``: the per-layer inputs of the episode's last ``2W-1`` steps
  (the previous block and the unfinished current one), right-aligned, zeros where no step of the
  episode is: the keys/values cache that lets one step at a time equal a whole-block call;
* ``pos`` ``[1]``: how many steps of the current block are done (0 .. W-1), stored as a float;
* ``prev`` ``[1]``: 1.0 once the episode has completed a block (so the current block has a
  previous one and the state vectors are no longer the initial ones), else 0.0.

So a stored step costs ``(R*S + layers*(2W-1) + 2/d) * d`` numbers: with d=128, 4 layers, W=S=16
and one recurrent layer that is 140 slots * 128 * 4 B, about 70 KiB (fp32).
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
    """One pre-LN layer attending over the previous block and its own (causally); recurrent
    layers also read and write the state vectors."""

    def __init__(
        self, d: int, heads: int, block_len: int, d_ff: int, num_state: int, gate: str | None
    ) -> None:
        super().__init__()
        self.heads = heads
        self.recurrent = gate is not None
        self.norm = nn.LayerNorm(d)
        self.query = nn.Linear(d, d)
        self.key_value = nn.Linear(d, 2 * d)
        # Learned bias per head and distance 0..2W-1 (previous block and current one).
        self.rel_bias = nn.Parameter(torch.zeros(heads, 2 * block_len))
        self.norm_ff = nn.LayerNorm(d)
        self.ff = _mlp(d, d_ff)
        if not self.recurrent:
            self.out = nn.Linear(d, d)
            return
        self.out = nn.Linear(2 * d, d)  # [self-attention ; cross-attention to the state]
        self.query_cross = nn.Linear(d, d)
        self.state_ids = nn.Parameter(torch.randn(num_state, d))  # added after state_norm
        self.initial = nn.Parameter(0.1 * torch.randn(num_state, d))  # state at episode start
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
        cn = self.state_norm(c) + self.state_ids
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
        """ext [B, P+T, d]: the held inputs (previous and unfinished block) then this call's.

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
        carried_valid: Tensor,
        block_len: int,
    ) -> None:
        self.block = block  # [B, T] block index of each step (0 = the carried, unfinished block)
        self.end_step = end_step  # [B, K] step that completes block k, -1 if none in this call
        self.reset = reset  # [B, K] block k starts an episode
        self.carried = carried  # [B, R, S, d] state vectors at the start of the call
        self.carried_valid = carried_valid  # [B] False: the episode's initial state applies
        self.block_len = block_len
        self.finals: list[Tensor] = []

    def run(self, layer: _BlockLayer, key: Tensor, value: Tensor) -> _BlockStates:
        """Scan the layer's state over the call's blocks; key/value [B, H, P+T, e]."""
        num_blocks = self.end_step.shape[1]
        complete = self.end_step >= 0
        # Extended-sequence positions of the W steps of block k end at P + end_step: they start
        # at P + end_step - (W-1) (P = 2W-1 held slots). Incomplete blocks gather a harmless
        # in-range stand-in.
        index = self.end_step.clamp(min=0).unsqueeze(-1) + torch.arange(
            self.block_len, 2 * self.block_len, device=key.device
        )  # [B, K, W]
        initial = layer.initial.to(key.dtype).expand_as(self.carried[:, 0])
        carried = self.carried[:, len(self.finals)].to(key.dtype)
        c = torch.where(self.carried_valid.view(-1, 1, 1), carried, initial)
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
                nxt = torch.where(self.reset[:, k + 1].view(-1, 1, 1), initial, nxt)
            c = nxt
        self.finals.append(c)
        num_state = c.shape[1]
        key_of = torch.arange(num_blocks, device=key.device).repeat_interleave(num_state)
        allowed = self.block.unsqueeze(-1) == key_of  # [B, T, K*S]
        return _BlockStates(torch.cat(keys, 2), torch.cat(values, 2), allowed)


class BlockRecurrentCore(MemoryCore):
    """Block-Recurrent Transformer; state ``state`` [R, S, d], ``block`` [L, 2W-1, d], ``pos``
    [1], ``prev`` [1] (see the module docstring).

    Input x [B, T, input_dim] -> Linear(input_dim, d_model) -> layers -> LayerNorm; output
    [B, T, d_model]. ``recurrent_layers``: Python indices (negative from the top); None = the
    paper's placement, ``-3`` (layer 0 below 3 layers). Raises ValueError on a non-positive size,
    ``d_model`` not divisible by ``num_heads``, an unknown ``gate`` or an out-of-range
    ``recurrent_layers`` entry.
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
            recurrent_layers = (-3,) if num_layers >= 3 else (0,)
        given = [int(i) for i in recurrent_layers]
        if not given or any(not -num_layers <= i < num_layers for i in given):
            raise ValueError(
                f"recurrent_layers must be a non-empty list of layer indices in "
                f"[{-num_layers}, {num_layers - 1}] (negative: from the top, -3 = the paper's "
                f"layer 10 of 12), got {list(recurrent_layers)!r}"
            )
        recurrent = tuple(sorted({i % num_layers for i in given}))
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
        held = 2 * self.block_len - 1
        return {
            "state": StateSpec(
                "carry", (len(self.recurrent_layers), self.num_state, self.d_model), dtype
            ),
            "block": StateSpec("carry", (self.num_layers, held, self.d_model), dtype),
            "pos": StateSpec("carry", (1,), dtype),
            "prev": StateSpec("carry", (1,), dtype),
        }

    def _forward(self, x: Tensor, state: State, first: Tensor) -> tuple[Tensor, State]:
        batch, steps = x.shape[:2]
        width = self.block_len
        held = 2 * width - 1  # previous block + the unfinished current one
        device = x.device
        t = torch.arange(steps, device=device)
        # Steps already done in the unfinished block, and whether a previous block of the episode
        # exists; rounding tolerates a state stored in reduced precision. An episode start at
        # step 0 discards both.
        done = state["pos"][:, 0].round().clamp(0, width - 1).long()
        done = torch.where(first[:, 0], torch.zeros_like(done), done)
        prev = (state["prev"][:, 0] > 0.5) & ~first[:, 0]
        # Position of each step in its block: counted from the last episode start in this call,
        # else continuing the carried block.
        last_first = torch.where(first, t, torch.full_like(t, -1)).cummax(dim=1).values
        pos = torch.where(last_first >= 0, t - last_first, done.unsqueeze(1) + t) % width
        block = (pos == 0).long().cumsum(dim=1)  # [B, T]; block 0 continues the carried one
        num_blocks = int(block.max()) + 1
        episode = first.long().cumsum(dim=1)  # [B, T]; 0 = the carried episode

        # Extended sequence: 2W-1 held slots then the T steps. Held slot j is ``age`` = P - j
        # steps back: the last `done` are block 0, the W before them the previous block (if it
        # exists): block -1, or block 0 when done = 0 (the call's first step then opens block 1).
        age = held - torch.arange(held, device=device)
        invalid = torch.full_like(age, -(1 << 30))
        previous_id = torch.where(done == 0, 0, -1).unsqueeze(1)
        held_block = torch.where(
            age <= done.unsqueeze(1),
            torch.zeros_like(age),
            torch.where(
                prev.unsqueeze(1) & (age <= done.unsqueeze(1) + width), previous_id, invalid
            ),
        )  # [B, P]
        ext_block = torch.cat([held_block, block], dim=1)  # [B, P+T]
        ext_episode = torch.cat([torch.zeros_like(held_block), episode], dim=1)
        ext_pos = torch.arange(held + steps, device=device)
        query_pos = held + t
        distance = (query_pos.unsqueeze(1) - ext_pos).clamp(0, 2 * width - 1)  # [T, P+T]
        key_block, query_block = ext_block.unsqueeze(1), block.unsqueeze(2)
        self_allowed = (
            (ext_episode.unsqueeze(1) == episode.unsqueeze(2))
            & (key_block >= query_block - 1)
            & (key_block <= query_block)
            & (ext_pos <= query_pos.unsqueeze(1))
        )  # [B, T, P+T]: previous block and current one up to the query, same episode

        is_end = pos == width - 1
        end_step = _scatter_per_block(is_end, block, t.expand(batch, steps), num_blocks, -1)
        reset = _scatter_per_block(first, block, torch.ones_like(block), num_blocks, 0).bool()
        scan = _Scan(block, end_step, reset, state["state"], prev, width)

        h = self.in_proj(x)
        held_inputs = state["block"].to(h.dtype)
        new_held = []
        for i, layer in enumerate(self.layers):
            ext = torch.cat([held_inputs[:, i], h], dim=1)
            new_held.append(ext[:, ext.shape[1] - held :])
            h = layer(ext, self_allowed, distance, scan if layer.recurrent else None)
        y = self.out_norm(h)

        # After the call: steps done in the current block, and whether it has a previous block
        # (it does if the last step completed a block, or if the last step's block had one).
        done_after = (pos[:, -1] + 1) % width
        last_block = block[:, -1]
        # Block k >= 2 follows a complete block of this call; block 1 follows the carried block
        # (complete now if it had steps, else the held previous one); block 0 is the carried one.
        follows_complete = torch.where(last_block == 1, (done > 0) | prev, last_block >= 2)
        had_prev = torch.where(
            reset.gather(1, last_block.unsqueeze(1)).squeeze(1),
            torch.zeros_like(prev),
            torch.where(last_block == 0, prev, follows_complete),
        )
        prev_after = (done_after == 0) | had_prev
        valid_after = done_after + torch.where(prev_after & (done_after > 0), width, 0)
        valid_after = torch.where(done_after == 0, width, valid_after)  # just-completed block
        slot_age = held - torch.arange(held, device=device)
        keep = (slot_age <= valid_after.unsqueeze(1)).view(batch, 1, held, 1)
        dtype = self.state_dtype
        held_state = torch.stack(new_held, dim=1)
        vectors = torch.stack(scan.finals, dim=1)
        new_state = {
            "state": torch.where(prev_after.view(-1, 1, 1, 1), vectors, 0.0).to(dtype),
            "block": torch.where(keep, held_state, torch.zeros_like(held_state)).to(dtype),
            "pos": done_after.to(dtype).unsqueeze(1),
            "prev": prev_after.to(dtype).unsqueeze(1),
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
