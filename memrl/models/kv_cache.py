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
* the position projections ``W_R R_d`` (input-independent) are memoised per weights version.

The per-step record (``step_slices``) and the state are exactly the uncached ones, so episodes
and replay store the same slices and training is unchanged. :func:`act` equals ``core(x, state,
first)`` to float tolerance (the score is summed in a different order than SDPA's).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from memrl.models.attention import RelativeWindowAttention, WindowCore, sinusoid_positions
from memrl.models.base import State

CACHE_KEYS = ("kv_keys", "kv_values", "kv_version")


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


def _pre(layer: nn.Module) -> nn.Module:
    """The norm in front of the attention's keys and queries (none in trxl's post-LN layer)."""
    return nn.Identity() if _kind(layer) == "trxl" else layer.attention_norm


def _project_kv(attention: RelativeWindowAttention, inputs: Tensor) -> tuple[Tensor, Tensor]:
    """inputs [B, S, d] (already normed) -> keys, values [B, kv_heads, S, head_dim]."""
    batch, slots, _ = inputs.shape
    kv = attention.key_value(inputs).view(batch, slots, 2, attention.kv_heads, -1)
    return kv[:, :, 0].transpose(1, 2), kv[:, :, 1].transpose(1, 2)


def _rebuild(core: WindowCore, memory: Tensor) -> tuple[Tensor, Tensor]:
    """Keys and values [B, layers, kv_heads, M, e] of every stored slot of ``memory``."""
    keys, values = [], []
    for index, layer in enumerate(core.layers):
        k, v = _project_kv(layer.attention, _pre(layer)(memory[:, index]))
        keys.append(k)
        values.append(v)
    return torch.stack(keys, 1), torch.stack(values, 1)


def _positions(core: WindowCore, version: int) -> list[Tensor]:
    """Per layer, ``W_R R_d`` [H, M+1, e] indexed by slot (slot j at distance M - j)."""
    memo = getattr(core, "_kv_position_memo", None)
    weight = core.layers[0].attention.position.weight
    key = (version, weight.device, weight.dtype)
    if memo is not None and memo[0] == key:
        return memo[1]
    encodings = sinusoid_positions(
        core.memory_len + 1, core.d_model, dtype=weight.dtype, device=weight.device
    ).flip(0)
    out = []
    for layer in core.layers:
        att = layer.attention
        r = att.position(encodings).view(core.memory_len + 1, att.num_heads, -1).transpose(0, 1)
        out.append(r)
    core._kv_position_memo = (key, out)
    return out


def _attend(
    att: RelativeWindowAttention,
    query_in: Tensor,
    keys: Tensor,
    values: Tensor,
    position: Tensor,
    allowed: Tensor,
    global_keys: Tensor | None,
) -> Tensor:
    """One query per row against its slots. query_in [B, 1, d]; keys/values
    [B, kv_heads, M+1, e] (slots, the new step last); position [H, M+1, e]; allowed [B, M+1]."""
    batch = query_in.shape[0]
    heads, head_dim, memory = att.num_heads, att.head_dim, keys.shape[2] - 1
    q = att.query(query_in).view(batch, heads, 1, head_dim)
    group = heads // att.kv_heads
    if group > 1:
        keys = keys.repeat_interleave(group, dim=1)
        values = values.repeat_interleave(group, dim=1)
    scale = 1.0 / math.sqrt(head_dim)
    content = (q + att.content_bias[:, None]) @ keys.transpose(-1, -2)  # [B, H, 1, M+1]
    relative = (q + att.position_bias[:, None]) @ position.transpose(-1, -2)[None]
    logits = (content + relative) * scale
    mask = allowed[:, None, None, :]
    distance = torch.arange(memory, -1, -1, device=keys.device)
    heads_allowed = att.head_mask(distance)  # [H, M+1] (dilated windows) or None
    if heads_allowed is not None:
        mask = mask & heads_allowed[None, :, None, :]
    logits = logits.masked_fill(~mask, float("-inf"))
    if global_keys is not None:
        kg, vg = _project_kv(att, global_keys[None].to(q.dtype))  # [1, kv_heads, G, e]
        if group > 1:
            kg, vg = kg.repeat_interleave(group, dim=1), vg.repeat_interleave(group, dim=1)
        logits = torch.cat(
            [logits, ((q + att.content_bias[:, None]) @ kg.transpose(-1, -2)) * scale], dim=-1
        )
        values = torch.cat([values, vg.expand(batch, -1, -1, -1)], dim=2)
    out = torch.softmax(logits, dim=-1) @ values  # [B, H, 1, e]
    return att.out(out.transpose(1, 2).reshape(batch, 1, heads * head_dim))


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
    ``cache`` from a previous call, :func:`empty_cache`, or None (= empty). Raises ValueError if
    ``T != 1`` or the core has layers :func:`act` does not know.
    """
    if not supports_kv_cache(core):
        raise ValueError(f"{type(core).__name__} has no K/V-cached acting step")
    if x.dim() != 3 or x.shape[1] != 1:
        raise ValueError(f"act takes one step, x [B, 1, input_dim]; got {tuple(x.shape)}")
    state, first = core._checked_inputs(x, state, first)
    batch, memory_len = x.shape[0], core.memory_len
    memory = state["memory"]
    cache = empty_cache(core, batch, x.device) if cache is None else cache
    version = weights_version(core)
    stale = cache["kv_version"] != version
    keys_cache, values_cache = cache["kv_keys"], cache["kv_values"]
    if bool(stale.any()):
        rows = torch.nonzero(stale).flatten()
        new_k, new_v = _rebuild(core, memory[rows].to(keys_cache.dtype))
        keys_cache, values_cache = keys_cache.clone(), values_cache.clone()
        keys_cache[rows], values_cache[rows] = (
            new_k.to(keys_cache.dtype),
            new_v.to(keys_cache.dtype),
        )
    positions = _positions(core, version)

    start = first[:, 0]
    # Slot j (memory) may be seen iff it holds a step of this episode; the new step always.
    slot_ok = state["memory_mask"] & ~start[:, None]
    allowed = torch.cat([slot_ok, torch.ones_like(start)[:, None]], dim=1)  # [B, M+1]
    h = core.input_proj(x)
    if core.embedding_relu:
        h = F.relu(h)
    inputs, next_keys, next_values = [], [], []
    for index, layer in enumerate(core.layers):
        kind = _kind(layer)
        inputs.append(h)
        att = layer.attention
        normed = _pre(layer)(h)
        k_new, v_new = _project_kv(att, normed)
        keys = torch.cat([keys_cache[:, index].to(k_new.dtype), k_new], dim=2)
        values = torch.cat([values_cache[:, index].to(v_new.dtype), v_new], dim=2)
        global_keys = None
        if kind == "local_xl" and layer.global_tokens is not None:
            global_keys = layer.attention_norm(layer.global_tokens.to(h.dtype))
        attended = _attend(att, normed, keys, values, positions[index], allowed, global_keys)
        h = _after_attention(layer, kind, h, attended)
        next_keys.append(keys[:, :, 1:])
        next_values.append(values[:, :, 1:])
    layer_inputs = torch.stack(inputs, dim=2)  # [B, 1, layers, d]

    mask = allowed[:, 1:]  # after the step: the last M keys, all of this episode
    stacked = torch.cat([memory, layer_inputs.transpose(1, 2).to(memory.dtype)], dim=2)
    next_memory = torch.where(mask[:, None, :, None], stacked[:, :, -memory_len:], 0.0)
    next_cache = {
        "kv_keys": torch.stack(next_keys, 1).to(keys_cache.dtype),
        "kv_values": torch.stack(next_values, 1).to(values_cache.dtype),
        "kv_version": torch.full_like(cache["kv_version"], version),
    }
    return core.out_norm(h), {"memory": next_memory, "memory_mask": mask}, next_cache
