"""Acting with a K/V cache for the window cores (trxl, gtrxl, local_xl).

A window core's one-step call re-projects keys and values for all ``M`` stored slots of every
layer (and the ``M + 1`` position encodings), although each slot's keys/values depend only on that
slot's stored layer input and the weights. :func:`act` keeps them:

* ``cache = {"kv_keys", "kv_values": [B, layers, kv_heads, M, head_dim], "kv_version": [B]}``
  beside the state (oldest slot first, as ``memory``). A row whose ``kv_version`` differs from
  the weights' current version (:func:`weights_version`) is rebuilt from ``state["memory"]``,
  the stored layer inputs, before it is used: a weight change (an optimizer step, RLlib's weight
  sync through ``load_state_dict``) is never seen through stale keys. ``empty_cache`` rows have
  version -1 (rebuilt on first use).
* the position projections ``W_R R_d`` (input-independent), the dilated heads' masks and
  local_xl's global keys/values are memoised per weights version.

**Append-only buffers, no per-step shift.** Moving the window by one slot used to copy the whole
memory ``[B, layers, M, d]`` and cache ``2 x [B, layers, kv_heads, M, e]`` every step (at
``M = 1024``, batch 64, d 128: ~400 MB written per step), more than the attention itself reads.
:func:`act` instead writes the step into buffers with ``C = M + spare`` slots
(:func:`spare_slots`): the window before the step is slots ``[s, s + M)``, the step goes to slot
``s + M``, the attention reads slots ``[s, s + M]`` in place (``M + 1`` keys, oldest first, so
the position table and masks need no rotation), and the returned ``state["memory"]``,
``kv_keys`` and ``kv_values`` are *views* of slots ``[s + 1, s + M + 1)``: the same values, in the
same canonical oldest-first order, as the uncached core returns, only with other strides. When
the buffers are full, the window is copied into fresh buffers (one copy per ``spare`` steps).
Keys are stored with the slot axis last (``[layers, B, kv_heads, e, C]``) and the layer axis
outermost, so each layer's ``q K^T`` and ``w V`` are batched matrix products over contiguous
rows, without the copy that a ``[B, layers, ...]`` slice would force on ``matmul``.

The buffers are used in place only when the caller hands back exactly the tensors of
:func:`act`'s latest output for them (each output tensor is tagged; a tag goes stale once a later
call has used it). Any other input (the env runner's re-batched numpy copies, an older state,
a sliced or rebuilt state) is copied into fresh buffers first, so no tensor :func:`act` has
returned, and no input, is ever changed afterwards: a step only writes slots that no earlier
output can see; rebuilding stale rows and the wrap-around go to freshly allocated buffers, and
dropping the slots of an ended episode to a fresh memory buffer (its keys/values are masked, not
zeroed, so those buffers are kept). The trade: the live state is a view of a buffer ~``C / M``
times its size, and a caller who edits a returned tensor in place and hands it back breaks the
cache (as it would any K/V cache). RLlib's env runner re-batches the per-episode state every
step (numpy unbatch and stack), so there every step takes the copying path (one copy of the
window per step, as the old shift made; the attention itself is cheaper than before); the
in-place path serves callers that carry the tensors (``memrl bench cores``, evaluation loops).

The per-step record (``step_slices``) and the state are the uncached ones (same fields, shapes
and oldest-first order; the values to float tolerance, as the inputs of layers past the first
come out of the cached attention), so episodes and replay store the same slices and training is
unchanged. :func:`act` equals ``core(x, state,
first)`` to float tolerance (the score is summed in a different order than SDPA's). It is for
acting: nothing written to the buffers carries gradients.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from memrl.models.attention import RelativeWindowAttention, WindowCore, sinusoid_positions
from memrl.models.base import State

CACHE_KEYS = ("kv_keys", "kv_values", "kv_version")
# Fewest spare slots of the append-only buffers (more for long memories: see spare_slots).
MIN_SPARE_SLOTS = 8
# Attribute of act's output tensors naming their buffers and step: (_Buffers, step).
_TAG = "_memrl_kv_buffers"


def supports_kv_cache(core: nn.Module) -> bool:
    """Whether :func:`act` knows every layer of ``core`` (trxl, gtrxl, local_xl layers)."""
    return isinstance(core, WindowCore) and all(_kind(layer) for layer in core.layers)


def _kind(layer: nn.Module) -> str | None:
    name = type(layer).__name__
    return {"TrXLLayer": "trxl", "GTrXLLayer": "gtrxl", "LocalXLLayer": "local_xl"}.get(name)


def weights_version(core: nn.Module) -> int:
    """A number that grows whenever any parameter of ``core`` changes in place (torch's version
    counters: optimizer steps, ``load_state_dict``, ``copy_``)."""
    return sum(p._version for p in core.parameters())


def cache_shapes(core: WindowCore) -> dict[str, tuple[int, ...]]:
    """Unbatched shapes of the cache fields (``kv_version`` is a scalar per row)."""
    head_dim = core.d_model // core.num_heads
    kv = (core.num_layers, core.kv_heads, core.memory_len, head_dim)
    return {"kv_keys": kv, "kv_values": kv, "kv_version": ()}


def empty_cache(core: WindowCore, batch: int, device: torch.device | str | None = None) -> State:
    """A cache whose rows are all stale (rebuilt from the memory on first use)."""
    shapes = cache_shapes(core)
    dtype = core.state_dtype
    return {
        "kv_keys": torch.zeros((batch, *shapes["kv_keys"]), dtype=dtype, device=device),
        "kv_values": torch.zeros((batch, *shapes["kv_values"]), dtype=dtype, device=device),
        "kv_version": torch.full((batch,), -1, dtype=torch.long, device=device),
    }


def spare_slots(memory_len: int) -> int:
    """Slots past the window in the append-only buffers: a fresh copy every this many steps.
    A quarter of the memory (amortised: 4 slots copied per step), at least MIN_SPARE_SLOTS."""
    return max(memory_len // 4, MIN_SPARE_SLOTS)


@dataclass(eq=False)
class _Buffers:
    """Append-only storage of one batch's window: the window before the next step is slots
    ``[start, start + M)``. ``step`` counts the steps taken: only outputs tagged with the
    current step may be appended to (older ones would see the new slots)."""

    memory: Tensor  # [B, layers, C, d]
    keys: Tensor  # [layers, B, kv_heads, e, C]
    values: Tensor  # [layers, B, kv_heads, C, e]
    start: int
    step: int = 0

    @property
    def capacity(self) -> int:
        return self.memory.shape[2]


def _pre(layer: nn.Module) -> nn.Module:
    """The norm in front of the attention's keys and queries (none in trxl's post-LN layer)."""
    return nn.Identity() if _kind(layer) == "trxl" else layer.attention_norm


def _project_kv(attention: RelativeWindowAttention, inputs: Tensor) -> tuple[Tensor, Tensor]:
    """inputs [B, S, d] (already normed) -> keys, values [B, kv_heads, S, head_dim]."""
    batch, slots, _ = inputs.shape
    kv = attention.key_value(inputs).view(batch, slots, 2, attention.kv_heads, -1)
    return kv[:, :, 0].transpose(1, 2), kv[:, :, 1].transpose(1, 2)


@dataclass(frozen=True)
class _LayerConstants:
    """What a layer's step needs that does not depend on the input (memoised per version)."""

    positions: Tensor  # W_R R_d as [H, e, M+1]; slot j (oldest first) at distance M - j
    head_bias: Tensor | None  # [1, H, M+1] 0 / -inf: dilated heads' distances; None = all
    global_kv: tuple[Tensor, Tensor] | None  # local_xl's global keys, values [kv_heads, G, e]


@torch.no_grad()
def _constants(core: WindowCore, version: int) -> list[_LayerConstants]:
    memo = getattr(core, "_kv_constants_memo", None)
    weight = core.layers[0].attention.position.weight
    # Inference tensors (made under inference_mode) may not be used by autograd outside it.
    key = (version, weight.device, weight.dtype, torch.is_inference_mode_enabled())
    if memo is not None and memo[0] == key:
        return memo[1]
    memory = core.memory_len
    encodings = sinusoid_positions(
        memory + 1, core.d_model, dtype=weight.dtype, device=weight.device
    ).flip(0)
    distance = torch.arange(memory, -1, -1, device=weight.device)
    out = []
    for layer in core.layers:
        att = layer.attention
        r = att.position(encodings).view(memory + 1, att.num_heads, -1).permute(1, 2, 0)
        allowed = att.head_mask(distance)  # [H, M+1] or None
        head_bias = None
        if allowed is not None:
            head_bias = torch.zeros(allowed.shape, dtype=weight.dtype, device=weight.device)
            head_bias = head_bias.masked_fill_(~allowed, float("-inf"))[None]
        global_kv = None
        if _kind(layer) == "local_xl" and layer.global_tokens is not None:
            tokens = layer.attention_norm(layer.global_tokens)
            k, v = _project_kv(att, tokens[None])
            global_kv = (k[0], v[0])
        out.append(_LayerConstants(r.contiguous(), head_bias, global_kv))
    core._kv_constants_memo = (key, out)
    return out


def _carried(state: State, cache: State) -> _Buffers | None:
    """The buffers behind ``state`` and ``cache`` if they are act's latest output, else None."""
    tag = getattr(cache["kv_keys"], _TAG, None)
    if tag is None or tag[0].step != tag[1]:
        return None
    if tag[0].memory.is_inference() and not torch.is_inference_mode_enabled():
        return None  # torch forbids writing into inference tensors outside inference mode
    for tensor in (cache["kv_values"], state["memory"], state["memory_mask"]):
        other = getattr(tensor, _TAG, None)
        if other is None or other[0] is not tag[0] or other[1] != tag[1]:
            return None
    return tag[0]


def _fresh(core: WindowCore, memory: Tensor, cache: State, version: int, keep: Tensor) -> _Buffers:
    """New buffers holding the window of ``memory`` [B, layers, M, d] and its keys/values
    (copied from ``cache`` where current, rebuilt from the memory where stale). Slots
    ``1 .. M-1`` of the memory (those the next window keeps) are zeroed where ``keep`` [B, M-1]
    is False; slot 0 is left unwritten (the next window drops it)."""
    batch, layers, slots, dim = memory.shape
    capacity = slots + spare_slots(slots)
    kv_heads, head_dim = core.kv_heads, core.d_model // core.num_heads
    dtype = cache["kv_keys"].dtype
    buffers = _Buffers(
        memory=memory.new_empty((batch, layers, capacity, dim)),
        keys=memory.new_empty((layers, batch, kv_heads, head_dim, capacity), dtype=dtype),
        values=memory.new_empty((layers, batch, kv_heads, capacity, head_dim), dtype=dtype),
        start=0,
    )
    zero = memory.new_zeros(())
    torch.where(keep[:, None, :, None], memory[:, :, 1:], zero, out=buffers.memory[:, :, 1:slots])
    stale = cache["kv_version"] != version
    if not bool(stale.all()):
        buffers.keys[..., :slots] = cache["kv_keys"].permute(1, 0, 2, 4, 3)
        buffers.values[..., :slots, :] = cache["kv_values"].transpose(0, 1)
    if bool(stale.any()):
        rows = slice(None) if bool(stale.all()) else torch.nonzero(stale).flatten()
        inputs = memory[rows].to(dtype)
        for index, layer in enumerate(core.layers):
            k, v = _project_kv(layer.attention, _pre(layer)(inputs[:, index]))
            buffers.keys[index, rows, :, :, :slots] = k.transpose(-1, -2)
            buffers.values[index, rows, :, :slots] = v
    return buffers


def _moved(old: _Buffers, memory_len: int, keep: Tensor, kv_too: bool) -> _Buffers:
    """Fresh buffers for the window of ``old`` (memory slots the next window keeps zeroed where
    ``keep`` is False); ``kv_too``: keys/values copied to fresh buffers as well (the wrap-around:
    the window moves to slot 0), else shared with ``old`` at the same slots."""
    s, m = old.start, memory_len
    start = 0 if kv_too else s
    memory = old.memory.new_empty(old.memory.shape)
    torch.where(
        keep[:, None, :, None],
        old.memory[:, :, s + 1 : s + m],
        memory.new_zeros(()),
        out=memory[:, :, start + 1 : start + m],
    )
    keys, values = old.keys, old.values
    if kv_too:
        keys, values = torch.empty_like(keys), torch.empty_like(values)
        keys[..., :m] = old.keys[..., s : s + m]
        values[..., :m, :] = old.values[..., s : s + m, :]
    return _Buffers(memory, keys, values, start)


def _attend(
    att: RelativeWindowAttention,
    query_in: Tensor,
    keys: Tensor,
    values: Tensor,
    constants: _LayerConstants,
    step_bias: Tensor,
) -> Tensor:
    """One query per row against its window. query_in [B, d] (already normed); keys
    [B, kv_heads, e, N] and values [B, kv_heads, N, e] of the N = M + 1 slots (oldest first, the
    step itself last); step_bias [B, 1, N] (0 / -inf: the window rule)."""
    batch = query_in.shape[0]
    heads, head_dim, kv_heads = att.num_heads, att.head_dim, att.kv_heads
    group, slots = heads // kv_heads, keys.shape[-1]
    scale = 1.0 / math.sqrt(head_dim)
    q = att.query(query_in).view(batch, heads, head_dim)
    content_q = (q + att.content_bias) * scale
    position_q = (q + att.position_bias) * scale
    if keys.dtype != q.dtype:
        keys, values = keys.to(q.dtype), values.to(q.dtype)
    # Position term and masks first ([H, B, N] -> [B, H, N]), then the content term added by
    # the batched product itself; query head h uses K/V head h // group.
    relative = torch.bmm(position_q.transpose(0, 1), constants.positions.to(q.dtype))
    bias = torch.add(
        relative.transpose(0, 1), step_bias, out=relative.new_empty(batch, heads, slots)
    )
    if constants.head_bias is not None:
        bias += constants.head_bias
    logits = torch.baddbmm(
        bias.view(batch * kv_heads, group, slots),
        content_q.view(batch * kv_heads, group, head_dim),
        keys.reshape(batch * kv_heads, head_dim, slots),
    ).view(batch, heads, slots)
    if constants.global_kv is not None:
        kg, vg = (x.to(q.dtype) for x in constants.global_kv)
        grouped_q = content_q.view(batch, kv_heads, group, head_dim)
        global_logits = torch.einsum("bkge,kne->bkgn", grouped_q, kg)
        logits = torch.cat([logits, global_logits.reshape(batch, heads, -1)], dim=-1)
    weights = torch.softmax(logits, dim=-1)
    out = torch.bmm(
        weights[..., :slots].view(batch * kv_heads, group, slots),
        values.reshape(batch * kv_heads, slots, head_dim),
    )
    if constants.global_kv is not None:
        global_weights = weights[..., slots:].reshape(batch, kv_heads, group, -1)
        out = out + torch.einsum("bkgn,kne->bkge", global_weights, vg).reshape(out.shape)
    return att.out(out.view(batch, heads * head_dim))


def _after_attention(layer: nn.Module, kind: str, h: Tensor, attended: Tensor) -> Tensor:
    """The layer's residual/gate and feed-forward after its attention (as its ``forward``)."""
    if kind == "gtrxl":
        y = layer.attention_gate(h, F.relu(attended))
        return layer.feed_forward_gate(y, F.relu(layer.feed_forward(layer.feed_forward_norm(y))))
    if kind == "trxl":
        h = layer.attention_norm(h + attended)
        return layer.feed_forward_norm(h + layer.feed_forward(h))
    h = h + attended  # local_xl
    return h + layer.feed_forward(layer.feed_forward_norm(h))


def act(
    core: WindowCore, x: Tensor, state: State | None, first: Tensor | None, cache: State | None
) -> tuple[Tensor, State, State]:
    """One step of ``core`` with cached keys/values: ``(y [B, 1, d], next state, next cache)``.

    x [B, 1, input_dim]; ``state``/``first`` as ``core.forward`` (None: initial / no start);
    ``cache`` from a previous call, :func:`empty_cache`, or None (= empty). Pass the state and
    cache of the previous call unchanged (not edited in place) to take the in-place path (see the
    module docstring); anything else is copied first. Raises ValueError if ``T != 1`` or the
    core has layers :func:`act` does not know.
    """
    if not supports_kv_cache(core):
        raise ValueError(f"{type(core).__name__} has no K/V-cached acting step")
    if x.dim() != 3 or x.shape[1] != 1:
        raise ValueError(f"act takes one step, x [B, 1, input_dim]; got {tuple(x.shape)}")
    state, first = core._checked_inputs(x, state, first)
    batch, slots = x.shape[0], core.memory_len
    cache = empty_cache(core, batch, x.device) if cache is None else cache
    version = weights_version(core)
    constants = _constants(core, version)

    start = first[:, 0]
    # Slot j (memory) may be seen iff it holds a step of this episode; the new step always.
    slot_ok = state["memory_mask"] & ~start[:, None]
    allowed = torch.cat([slot_ok, torch.ones_like(start)[:, None]], dim=1)  # [B, M+1]
    keep = allowed[:, 1:-1]  # the slots the next window carries over: zero where not kept

    buffers = _carried(state, cache)
    if buffers is not None and not bool((cache["kv_version"] == version).all()):
        buffers = None  # stale rows are rebuilt into fresh buffers, never over an output
    if buffers is None:
        buffers = _fresh(core, state["memory"], cache, version, keep)
    else:
        buffers.step += 1  # the inputs are no longer the latest output
        ended = start & state["memory_mask"][:, 1:].any(dim=1)  # an episode's slots to drop
        if buffers.start + slots == buffers.capacity or bool(ended.any()):
            buffers = _moved(buffers, slots, keep, buffers.start + slots == buffers.capacity)
    s, new = buffers.start, buffers.start + slots  # window [s, s + M); the step goes to slot new

    h = core.input_proj(x[:, 0])
    if core.embedding_relu:
        h = F.relu(h)
    step_bias = torch.zeros(allowed.shape, dtype=h.dtype, device=x.device)
    step_bias = step_bias.masked_fill_(~allowed, float("-inf"))[:, None]  # [B, 1, M+1]
    for index, layer in enumerate(core.layers):
        att = layer.attention
        buffers.memory[:, index, new] = h.detach()
        normed = _pre(layer)(h)
        kv = att.key_value(normed).detach().view(batch, 2, att.kv_heads, -1)
        buffers.keys[index, ..., new] = kv[:, 0]
        buffers.values[index, :, :, new] = kv[:, 1]
        keys = buffers.keys[index, ..., s : new + 1]  # [B, kv_heads, e, M+1]
        values = buffers.values[index, :, :, s : new + 1]  # [B, kv_heads, M+1, e]
        attended = _attend(att, normed, keys, values, constants[index], step_bias)
        h = _after_attention(layer, _kind(layer), h, attended)

    buffers.start = s + 1
    next_state = {"memory": buffers.memory[:, :, s + 1 : new + 1], "memory_mask": allowed[:, 1:]}
    next_cache = {
        "kv_keys": buffers.keys[..., s + 1 : new + 1].permute(1, 0, 2, 4, 3),
        "kv_values": buffers.values[:, :, :, s + 1 : new + 1].transpose(0, 1),
        "kv_version": torch.full((batch,), version, dtype=torch.long, device=x.device),
    }
    tag = (buffers, buffers.step)
    for tensor in (*next_state.values(), next_cache["kv_keys"], next_cache["kv_values"]):
        setattr(tensor, _TAG, tag)
    return core.out_norm(h)[:, None], next_state, next_cache
