"""The shared window attention: mask semantics, grouped K/V, blocked == dense, GTrXL gate init."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from core_kwargs import SMALL_CORE_KWARGS, WINDOW_CORES

from memrl.models import make_core
from memrl.models.attention import EpisodeWindow, RelativeWindowAttention, sinusoid_positions
from memrl.models.gtrxl import GTrXLLayer

D_IN = 5


def memory_len(kwargs: dict) -> int:
    if "memory_len" in kwargs:
        return kwargs["memory_len"]
    return kwargs["window"] * max(kwargs.get("dilations", (1,)))


def head_distances(kwargs: dict) -> set[int] | None:
    """Distances some head may attend to (local_xl's dilated windows); None = all of 0..M."""
    if "dilations" not in kwargs:
        return None
    return {k * d for d in kwargs["dilations"] for k in range(kwargs["window"] + 1)}


def random_episode(
    batch: int, steps: int, memory: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``first`` [B, T] with a few starts per row, and a canonical memory mask [B, M] whose
    valid slots are the newest ``k`` (k differs per row, 0..M)."""
    g = torch.Generator().manual_seed(seed)
    first = torch.rand(batch, steps, generator=g) < 0.15
    valid = torch.randint(0, memory + 1, (batch,), generator=g)
    memory_mask = torch.arange(memory)[None, :] >= memory - valid[:, None]
    return first, memory_mask


def steps_since_start(first: torch.Tensor, memory_mask: torch.Tensor) -> torch.Tensor:
    """[B, T]: how many earlier steps of the same episode exist (memory counts if valid)."""
    batch, steps = first.shape
    out = torch.zeros(batch, steps, dtype=torch.long)
    for b in range(batch):
        count = int(memory_mask[b].sum())
        for t in range(steps):
            count = 0 if first[b, t] else count
            out[b, t] = count
            count += 1
    return out


def dense_allowed(
    first: torch.Tensor, memory_mask: torch.Tensor, distances: set[int] | None = None
) -> torch.Tensor:
    """The window rule written out pair by pair: [B, T, M+T] bool (reference); ``distances``
    further restricts the distances (steps back) a key may lie at."""
    batch, steps = first.shape
    memory = memory_mask.shape[1]
    since = steps_since_start(first, memory_mask)
    allowed = torch.zeros(batch, steps, memory + steps, dtype=torch.bool)
    for b in range(batch):
        for t in range(steps):
            for j in range(memory + steps):
                back = memory + t - j  # how many steps before t key j lies
                allowed[b, t, j] = 0 <= back <= min(memory, int(since[b, t])) and (
                    distances is None or back in distances
                )
    return allowed


@pytest.mark.parametrize("block", [1, 4, 6, 11, 40])
def test_each_step_sees_min_of_memory_and_episode_so_far_plus_itself(block):
    memory, steps = 6, 29
    first, memory_mask = random_episode(5, steps, memory, seed=block)
    blocks = EpisodeWindow.build(first, memory_mask, block).allowed  # [B, n, block, M+block]
    n = math.ceil(steps / block)
    assert blocks.shape == (5, n, block, memory + block)
    # Scatter the blocks back onto [T, M+T] to compare with the rule written out pair by pair.
    full = torch.zeros(5, n * block, memory + n * block, dtype=torch.bool)
    for c in range(n):
        full[:, c * block : (c + 1) * block, c * block : c * block + memory + block] = blocks[:, c]
    full = full[:, :steps, : memory + steps]
    expected = torch.clamp(steps_since_start(first, memory_mask), max=memory) + 1
    assert torch.equal(full.sum(-1), expected)
    assert torch.equal(full, dense_allowed(first, memory_mask))


def test_next_memory_mask_keeps_only_the_last_steps_episode():
    memory = 4
    first = torch.tensor([[False, False], [False, True], [False, False]])
    memory_mask = torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1], [0, 0, 0, 0]], dtype=torch.bool)
    mask = EpisodeWindow.build(first, memory_mask, block=2).next_memory_mask()
    expected = torch.tensor([[1, 1, 1, 1], [0, 0, 0, 1], [0, 0, 1, 1]], dtype=torch.bool)
    assert mask.shape == (3, memory) and torch.equal(mask, expected)


@pytest.mark.parametrize("name", WINDOW_CORES)
def test_one_layer_output_depends_on_exactly_the_window(name):
    # With one layer, y_t depends on x_s iff s is one of the keys step t may see.
    kwargs = dict(SMALL_CORE_KWARGS[name], num_layers=1)
    torch.manual_seed(0)
    core = make_core(name, input_dim=D_IN, **kwargs).double()
    memory, steps = memory_len(kwargs), 17
    first, _ = random_episode(2, steps, memory, seed=3)
    x = torch.randn(2, steps, D_IN, dtype=torch.float64, requires_grad=True)
    state = core.initial_state(2)
    state = {k: v.double() if v.is_floating_point() else v for k, v in state.items()}
    y, _ = core(x, state, first)
    no_memory = torch.zeros(2, memory, dtype=torch.bool)
    allowed = dense_allowed(first, no_memory, head_distances(kwargs))[:, :, memory:]
    for t in range(steps):
        # Random weights: a plain sum of a LayerNorm output has zero gradient.
        probe = torch.randn(y[:, t].shape, dtype=y.dtype)
        (grad,) = torch.autograd.grad((y[:, t] * probe).sum(), x, retain_graph=True)
        depends = grad.abs().sum(-1) > 0  # [B, T]
        assert torch.equal(depends, allowed[:, t]), t


def dense_reference(
    attn: RelativeWindowAttention, queries, keys, first, memory_mask, global_keys=None
):
    """Transformer-XL's four-term score over the full [T, M+T] matrix, softmax, weighted sum.

    With ``attn.dilations``, head h keeps only distances k * d_h (k <= w); ``global_keys``
    [G, d] are extra keys every query sees with a content score only."""
    heads, kv_heads, e = attn.num_heads, attn.kv_heads, attn.head_dim
    batch, steps, _ = queries.shape
    memory = memory_mask.shape[1]
    q = attn.query(queries).view(batch, steps, heads, e).transpose(1, 2)
    k, v = attn.key_value(keys).view(batch, memory + steps, 2, kv_heads, e).unbind(2)
    k = k.transpose(1, 2).repeat_interleave(heads // kv_heads, 1)
    v = v.transpose(1, 2).repeat_interleave(heads // kv_heads, 1)
    r = (
        attn.position(
            sinusoid_positions(memory + steps, queries.shape[-1], dtype=q.dtype, device=q.device)
        )
        .view(-1, heads, e)
        .transpose(0, 1)
    )
    u, pv = attn.content_bias[:, None], attn.position_bias[:, None]
    dist = memory + torch.arange(steps)[:, None] - torch.arange(memory + steps)[None, :]
    r_ij = r[:, dist.clamp(min=0)]  # [H, T, M+T, e]
    score = torch.einsum("bhte,bhse->bhts", q + u, k)
    score = score + torch.einsum("bhte,htse->bhts", q + pv, r_ij)
    score = score / math.sqrt(e)
    allowed = dense_allowed(first, memory_mask)[:, None].expand(-1, heads, -1, -1)
    if attn.dilations is not None:
        per_head = torch.stack(
            [(dist % d == 0) & (dist <= attn.dilated_window * d) for d in attn.dilations]
        )  # [H, T, M+T]
        allowed = allowed & per_head[None]
    score = score.masked_fill(~allowed, float("-inf"))
    if global_keys is not None:
        kg, vg = attn.key_value(global_keys).view(-1, 2, kv_heads, e).unbind(1)
        kg = kg.transpose(0, 1).repeat_interleave(heads // kv_heads, 0)  # [H, G, e]
        vg = vg.transpose(0, 1).repeat_interleave(heads // kv_heads, 0)
        score = torch.cat([score, torch.einsum("bhte,hge->bhtg", q + u, kg) / math.sqrt(e)], -1)
        v = torch.cat([v, vg[None].expand(batch, -1, -1, -1)], dim=2)
    weights = torch.softmax(score, dim=-1)
    out = torch.einsum("bhts,bhse->bthe", weights, v).reshape(batch, steps, heads * e)
    return attn.out(out)


@pytest.mark.parametrize("kv_heads", [4, 1])
@pytest.mark.parametrize("block", [1, 4, 50])
def test_dilated_heads_and_global_keys_equal_dense_reference(block, kv_heads):
    torch.manual_seed(block)
    d, window, dilations, steps = 16, 3, (1, 1, 2, 4), 23
    memory = window * max(dilations)
    attn = RelativeWindowAttention(
        d, 4, kv_heads, dilations=dilations, dilated_window=window
    ).double()
    for p in (attn.content_bias, attn.position_bias):
        torch.nn.init.normal_(p)
    first, memory_mask = random_episode(3, steps, memory, seed=block + 20)
    queries = torch.randn(3, steps, d, dtype=torch.float64)
    keys = torch.cat([torch.randn(3, memory, d, dtype=torch.float64), queries], 1)
    global_keys = torch.randn(2, d, dtype=torch.float64)
    window_ = EpisodeWindow.build(first, memory_mask, block)
    for g in (None, global_keys):
        want = dense_reference(attn, queries, keys, first, memory_mask, g)
        torch.testing.assert_close(attn(queries, keys, window_, g), want, atol=1e-10, rtol=0)


def test_local_xl_memory_covers_the_widest_dilated_window():
    core = make_core("local_xl", input_dim=D_IN, window=5, dilations=(1, 1, 2, 4))
    assert core.memory_len == 20 and core.state_spec()["memory"].shape[1] == 20
    assert make_core("local_xl", input_dim=D_IN).dilations == (1, 1, 2, 4)
    for bad, field in [
        (dict(dilations=(1, 0, 1, 1)), "dilations"),
        (dict(dilations=(1, 2)), "dilations"),
        (dict(num_global=-1), "num_global"),
    ]:
        with pytest.raises(ValueError, match=field):
            make_core("local_xl", input_dim=D_IN, **bad)


def test_trxl_family_shares_u_and_v_across_layers():
    for name in WINDOW_CORES:
        core = make_core(name, input_dim=D_IN, **SMALL_CORE_KWARGS[name])
        biases = {id(layer.attention.content_bias) for layer in core.layers}
        assert len(biases) == 1, name


@pytest.mark.parametrize("kv_heads", [4, 2, 1])
@pytest.mark.parametrize("block", [1, 5, 6, 50])
def test_blocked_attention_equals_dense_reference(block, kv_heads):
    torch.manual_seed(block)
    d, memory, steps = 16, 6, 23
    attn = RelativeWindowAttention(d, 4, kv_heads).double()
    for p in (attn.content_bias, attn.position_bias):
        torch.nn.init.normal_(p)  # non-zero u, v so the bias terms are exercised
    first, memory_mask = random_episode(3, steps, memory, seed=block + 10)
    queries = torch.randn(3, steps, d, dtype=torch.float64)
    keys = torch.cat([torch.randn(3, memory, d, dtype=torch.float64), queries], 1)
    out = attn(queries, keys, EpisodeWindow.build(first, memory_mask, block))
    torch.testing.assert_close(
        out, dense_reference(attn, queries, keys, first, memory_mask), atol=1e-10, rtol=0
    )


def test_local_xl_chunked_equals_full_matrix_core():
    kwargs = SMALL_CORE_KWARGS["local_xl"]
    torch.manual_seed(0)
    chunked = make_core("local_xl", input_dim=D_IN, **kwargs).double()
    full = make_core("local_xl", input_dim=D_IN, **kwargs, block=10_000).double()
    full.load_state_dict(chunked.state_dict())
    x = torch.randn(3, 41, D_IN, dtype=torch.float64)
    first, _ = random_episode(3, 41, kwargs["window"], seed=1)
    y_chunked, s_chunked = chunked(x, None, first)
    y_full, s_full = full(x, None, first)
    torch.testing.assert_close(y_chunked, y_full, atol=1e-10, rtol=0)
    torch.testing.assert_close(s_chunked["memory"], s_full["memory"], atol=1e-10, rtol=0)


def test_local_xl_scores_are_blocked_not_full(monkeypatch):
    # The attention masks handed to SDPA are [*, w, 2w] per block: O(T * w), never T x (w + T).
    shapes = []
    sdpa = F.scaled_dot_product_attention

    def recording(q, k, v, attn_mask=None, **kw):
        shapes.append(tuple(attn_mask.shape))
        return sdpa(q, k, v, attn_mask=attn_mask, **kw)

    monkeypatch.setattr(F, "scaled_dot_product_attention", recording)
    w, steps = 8, 200
    core = make_core("local_xl", input_dim=D_IN, d_model=16, num_layers=1, num_heads=2, window=w)
    with torch.no_grad():
        core(torch.randn(2, steps, D_IN), None)
    assert shapes == [(2 * math.ceil(steps / w), 2, w, 2 * w)]


@pytest.mark.parametrize("name", WINDOW_CORES)
def test_multi_query_equals_explicitly_repeated_key_values(name):
    kwargs = SMALL_CORE_KWARGS[name]
    heads = kwargs["num_heads"]
    torch.manual_seed(0)
    mqa = make_core(name, input_dim=D_IN, **kwargs, kv_heads=1).double()
    mha = make_core(name, input_dim=D_IN, **kwargs).double()
    weights = {}
    for key, value in mqa.state_dict().items():
        if key.endswith("key_value.weight"):  # rows (two, kv_heads=1, e): repeat per head
            k, v = value.chunk(2, dim=0)
            value = torch.cat([k.repeat(heads, 1), v.repeat(heads, 1)], dim=0)
        weights[key] = value
    mha.load_state_dict(weights)
    x = torch.randn(3, 19, D_IN, dtype=torch.float64)
    first, _ = random_episode(3, 19, memory_len(kwargs), seed=2)
    y_mqa, s_mqa = mqa(x, None, first)
    y_mha, s_mha = mha(x, None, first)
    torch.testing.assert_close(y_mqa, y_mha, atol=1e-10, rtol=0)
    torch.testing.assert_close(s_mqa["memory"], s_mha["memory"], atol=1e-10, rtol=0)
    assert sum(p.numel() for p in mqa.parameters()) < sum(p.numel() for p in mha.parameters())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gtrxl_gate_bias_makes_blocks_start_near_identity(seed):
    def relative_change(gate_bias: float) -> float:
        torch.manual_seed(seed)
        layer = GTrXLLayer(32, 4, 4, 64, gate_bias)
        h, memory = torch.randn(4, 10, 32), torch.randn(4, 6, 32)
        window = EpisodeWindow.build(
            torch.zeros(4, 10, dtype=torch.bool), torch.ones(4, 6, dtype=torch.bool), block=10
        )
        with torch.no_grad():
            out = layer(h, memory, window)
        return float((out - h).norm() / h.norm())

    identity_biased, neutral = relative_change(2.0), relative_change(0.0)
    assert identity_biased < 0.4
    assert identity_biased < 0.5 * neutral


@pytest.mark.parametrize("name", WINDOW_CORES)
def test_invalid_memory_slots_are_exactly_zero(name):
    core = make_core(name, input_dim=D_IN, **SMALL_CORE_KWARGS[name])
    first = torch.zeros(2, 9, dtype=torch.bool)
    first[0, 7] = True  # row 0: only 2 steps of the new episode; row 1: 9 >= M steps
    with torch.no_grad():
        _, state = core(torch.randn(2, 9, D_IN), None, first)
    mask = state["memory_mask"]
    assert mask[0].sum() == 2 and mask[1].all()
    assert (state["memory"][0][:, ~mask[0]] == 0).all()
    assert (state["memory"][0][:, mask[0]] != 0).any()


@pytest.mark.parametrize(
    "kwargs,field",
    [
        (dict(num_heads=3), "d_model"),
        (dict(kv_heads=3), "kv_heads"),
        (dict(d_ff=0), "d_ff"),
        (dict(num_layers=-1), "num_layers"),
    ],
)
@pytest.mark.parametrize("name", WINDOW_CORES)
def test_bad_sizes_name_the_field(name, kwargs, field):
    with pytest.raises(ValueError, match=field):
        make_core(name, input_dim=D_IN, **dict(SMALL_CORE_KWARGS[name], **kwargs))
    memory_field = "window" if name == "local_xl" else "memory_len"
    with pytest.raises(ValueError, match=memory_field):
        make_core(name, input_dim=D_IN, **dict(SMALL_CORE_KWARGS[name], **{memory_field: 0}))
