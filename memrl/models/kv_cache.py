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


def _grouped(x: Tensor, group: int) -> Tensor:
    """[B, kv_heads, S, e] -> [B, kv_heads * group, S, e] (query head h uses K/V head h // group);
    a view when ``kv_heads == 1``."""
    if group == 1:
        return x
    batch, kv_heads, slots, dim = x.shape
    return x[:, :, None].expand(-1, -1, group, -1, -1).reshape(batch, kv_heads * group, slots, dim)


def _attend(
    att: RelativeWindowAttention,
    query_in: Tensor,
    cached: tuple[Tensor, Tensor],
    new: tuple[Tensor, Tensor],
    position: Tensor,
    allowed: Tensor,
    global_keys: Tensor | None,
) -> Tensor:
    """One query per row against its slots. query_in [B, 1, d]; ``cached`` keys/values
    [B, kv_heads, M, e] of the memory slots and ``new`` [B, kv_heads, 1, e] of the step itself
    (scored apart: no [M+1] copy of the cache); position [H, M+1, e]; allowed [B, M+1]."""
    batch = query_in.shape[0]
    heads, head_dim, memory = att.num_heads, att.head_dim, cached[0].shape[2]
    q = att.query(query_in).view(batch, heads, 1, head_dim)
    group = heads // att.kv_heads
    keys_m, values_m = (_grouped(x.to(q.dtype), group) for x in cached)
    keys_n, values_n = (_grouped(x, group) for x in new)
    scale = 1.0 / math.sqrt(head_dim)
    content_q = q + att.content_bias[:, None]
    content = torch.cat(
        [content_q @ keys_m.transpose(-1, -2), content_q @ keys_n.transpose(-1, -2)], dim=-1
    )  # [B, H, 1, M+1]
    relative = (q + att.position_bias[:, None]) @ position.transpose(-1, -2)[None]
    logits = (content + relative) * scale
    mask = allowed[:, None, None, :]
    distance = torch.arange(memory, -1, -1, device=q.device)
    heads_allowed = att.head_mask(distance)  # [H, M+1] (dilated windows) or None
    if heads_allowed is not None:
        mask = mask & heads_allowed[None, :, None, :]
    logits = logits.masked_fill(~mask, float("-inf"))
    values_g = None
    if global_keys is not None:
        kg, vg = (_grouped(x, group) for x in _project_kv(att, global_keys[None].to(q.dtype)))
        logits = torch.cat([logits, (content_q @ kg.transpose(-1, -2)) * scale], dim=-1)
        values_g = vg
    weights = torch.softmax(logits, dim=-1)
    out = weights[..., :memory] @ values_m + weights[..., memory : memory + 1] * values_n
    if values_g is not None:
        out = out + weights[..., memory + 1 :] @ values_g
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
    batch = x.shape[0]
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
    # The window slides by one slot: each shifted tensor is written once, the new step last.
    next_keys, next_values = torch.empty_like(keys_cache), torch.empty_like(values_cache)
    next_keys[:, :, :, :-1], next_values[:, :, :, :-1] = (
        keys_cache[..., 1:, :],
        values_cache[..., 1:, :],
    )
    next_memory = torch.empty_like(memory)
    next_memory[:, :, :-1] = memory[:, :, 1:]
    for index, layer in enumerate(core.layers):
        kind = _kind(layer)
        next_memory[:, index, -1] = h[:, 0].to(memory.dtype)
        att = layer.attention
        normed = _pre(layer)(h)
        k_new, v_new = _project_kv(att, normed)
        next_keys[:, index, :, -1:], next_values[:, index, :, -1:] = k_new, v_new
        global_keys = None
        if kind == "local_xl" and layer.global_tokens is not None:
            global_keys = layer.attention_norm(layer.global_tokens.to(h.dtype))
        cached = (keys_cache[:, index], values_cache[:, index])
        attended = _attend(
            att, normed, cached, (k_new, v_new), positions[index], allowed, global_keys
        )
        h = _after_attention(layer, kind, h, attended)

    mask = allowed[:, 1:]  # after the step: the last M keys, all of this episode
    if bool(start.any()):  # slots of the episode that ended are zero, as the uncached state
        next_memory[start, :, :-1] = 0.0
    next_cache = {
        "kv_keys": next_keys,
        "kv_values": next_values,
        "kv_version": torch.full_like(cache["kv_version"], version),
    }
    return core.out_norm(h), {"memory": next_memory, "memory_mask": mask}, next_cache
