"""K/V-cached acting of the window cores equals the uncached step and the one-call sequence,
across episode starts and across a weight change in the middle of an episode."""

from __future__ import annotations

import pytest
import torch
from core_kwargs import SMALL_CORE_KWARGS, VARIANTS

from memrl.models import kv_cache, make_core
from memrl.models.kv_cache import act, empty_cache, supports_kv_cache, weights_version

WINDOW = [(n, SMALL_CORE_KWARGS[n]) for n in ("trxl", "gtrxl", "local_xl")] + [
    (n, kw) for n, kw in VARIANTS if n in ("trxl", "gtrxl", "local_xl")
]
B, T, D = 3, 14, 5


def _core(name, kwargs):
    torch.manual_seed(0)
    core = make_core(name, D, **kwargs).double().eval()
    with torch.no_grad():  # non-zero u, v and gate biases, so every term is exercised
        for p in core.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return core


def _inputs():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(B, T, D, generator=g, dtype=torch.float64)
    first = torch.zeros(B, T, dtype=torch.bool)
    first[:, 0] = True
    first[0, 4] = first[1, 9] = first[2, 2] = first[2, 3] = True  # starts, also back to back
    return x, first


@pytest.mark.parametrize(
    ("name", "kwargs"), WINDOW, ids=[f"{n}-{i}" for i, (n, _) in enumerate(WINDOW)]
)
def test_cached_acting_equals_uncached_and_sequence(name, kwargs):
    core = _core(name, kwargs)
    assert supports_kv_cache(core)
    x, first = _inputs()
    with torch.no_grad():
        y_seq, state_seq = core(x, None, first)
        state, cache, plain = None, None, None
        for t in range(T):
            y, state, cache = act(core, x[:, t : t + 1], state, first[:, t : t + 1], cache)
            y_plain, plain = core(x[:, t : t + 1], plain, first[:, t : t + 1])
            torch.testing.assert_close(y, y_plain)
            torch.testing.assert_close(y[:, 0], y_seq[:, t])
            for key in plain:
                torch.testing.assert_close(state[key], plain[key])
    for key in state_seq:
        torch.testing.assert_close(state[key], state_seq[key])


@pytest.mark.parametrize("name", ["trxl", "gtrxl", "local_xl"])
def test_weight_change_mid_episode_rebuilds_the_cache(name):
    core = _core(name, SMALL_CORE_KWARGS[name])
    x, first = _inputs()
    first[:, 1:] = False  # one long episode per row: the change lands mid-episode
    change_at = 8
    with torch.no_grad():
        state, cache, plain = None, None, None
        for t in range(T):
            if t == change_at:
                before = weights_version(core)
                new = {k: v + 0.05 * torch.randn_like(v) for k, v in core.state_dict().items()}
                core.load_state_dict(new)  # as RLlib's weight sync does
                assert weights_version(core) > before
                assert (cache["kv_version"] != weights_version(core)).all()
            y, state, cache = act(core, x[:, t : t + 1], state, first[:, t : t + 1], cache)
            y_plain, plain = core(x[:, t : t + 1], plain, first[:, t : t + 1])
            torch.testing.assert_close(y, y_plain)
        # Stale keys would differ: keys of the first steps projected with the old weights.
        stale = dict(cache, kv_version=cache["kv_version"].clone())
        assert (stale["kv_version"] == weights_version(core)).all()


def test_stale_cache_is_never_used():
    """A cache filled with garbage but marked stale gives the same outputs as an empty one."""
    core = _core("gtrxl", SMALL_CORE_KWARGS["gtrxl"])
    x, first = _inputs()
    with torch.no_grad():
        _, state = core(x[:, :6], None, first[:, :6])
        garbage = empty_cache(core, B)
        garbage["kv_keys"].normal_()
        garbage["kv_values"].normal_()
        y_a, _, _ = act(core, x[:, 6:7], state, first[:, 6:7], garbage)
        y_b, _ = core(x[:, 6:7], state, first[:, 6:7])
        torch.testing.assert_close(y_a, y_b)
        # ... while a garbage cache marked current is used (the test can fail).
        garbage["kv_version"].fill_(weights_version(core))
        y_c, _, _ = act(core, x[:, 6:7], state, first[:, 6:7], garbage)
        assert not torch.allclose(y_c, y_b)


def test_act_rejects_sequences_and_other_cores():
    core = _core("trxl", SMALL_CORE_KWARGS["trxl"])
    with pytest.raises(ValueError, match="one step"):
        act(core, torch.zeros(2, 3, D, dtype=torch.float64), None, None, None)
    gru = make_core("gru", D, hidden_size=4)
    assert not supports_kv_cache(gru)
    with pytest.raises(ValueError, match="K/V"):
        act(gru, torch.zeros(2, 1, D), None, None, None)


# --- the append-only buffers: carried in place, wrapped around, never written under an output --

GROUPED = [
    ("gtrxl", dict(SMALL_CORE_KWARGS["gtrxl"], num_heads=4, kv_heads=2)),  # GQA
    ("trxl", dict(SMALL_CORE_KWARGS["trxl"], kv_heads=1)),  # MQA
    ("local_xl", SMALL_CORE_KWARGS["local_xl"]),  # dilated heads, global tokens
    (
        "local_xl",
        dict(SMALL_CORE_KWARGS["local_xl"], num_heads=4, kv_heads=2, dilations=(1, 1, 2, 3)),
    ),
]


def _long_inputs(steps: int):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(B, steps, D, generator=g, dtype=torch.float64)
    first = torch.zeros(B, steps, dtype=torch.bool)
    first[:, 0] = True
    # Starts at different points of the buffers' cycle, back to back, and one row that never
    # restarts (its window wraps around many times).
    first[0, [5, 13, 14, 29]] = True
    first[1, [21, 22, 23]] = True
    return x, first


def _shares_storage(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()


@pytest.mark.parametrize("spare", [1, 2, 3, 8])
@pytest.mark.parametrize(
    ("name", "kwargs"), GROUPED, ids=[f"{n}-{i}" for i, (n, _) in enumerate(GROUPED)]
)
def test_carried_buffers_wrap_around_and_equal_uncached(name, kwargs, spare, monkeypatch):
    """Many times the memory length: the window wraps around the buffers (every ``spare``
    steps), episodes start at every point of that cycle, the weights change mid-episode; the
    cached step equals the uncached one throughout, and no tensor act returned (or was given)
    changes afterwards."""
    monkeypatch.setattr(kv_cache, "MIN_SPARE_SLOTS", spare)
    core = _core(name, kwargs)
    steps, change_at = 40, 26
    x, first = _long_inputs(steps)
    returned: list[tuple[torch.Tensor, torch.Tensor]] = []  # (tensor, its value when returned)
    in_place = 0
    with torch.no_grad():
        state, cache, plain = None, None, None
        for t in range(steps):
            if t == change_at:
                core.load_state_dict(
                    {k: v + 0.05 * torch.randn_like(v) for k, v in core.state_dict().items()}
                )
            y, next_state, next_cache = act(
                core, x[:, t : t + 1], state, first[:, t : t + 1], cache
            )
            if cache is not None and _shares_storage(next_cache["kv_keys"], cache["kv_keys"]):
                in_place += 1
            state, cache = next_state, next_cache
            y_plain, plain = core(x[:, t : t + 1], plain, first[:, t : t + 1])
            torch.testing.assert_close(y, y_plain)
            torch.testing.assert_close(state["memory"], plain["memory"])
            assert torch.equal(state["memory_mask"], plain["memory_mask"])
            returned += [(v, v.clone()) for v in (*state.values(), *cache.values())]
        # The cache holds the keys/values of the window (as rebuilt from scratch).
        rebuilt = act(core, x[:, -1:], state, first[:, -1:], empty_cache(core, B))
        carried = act(core, x[:, -1:], state, first[:, -1:], cache)
        torch.testing.assert_close(carried[0], rebuilt[0])
        for key in ("kv_keys", "kv_values"):
            torch.testing.assert_close(carried[2][key], rebuilt[2][key])
    for tensor, value in returned:
        assert torch.equal(tensor, value)
    # The carried path is taken (not only the copying one): every step but the wrap-arounds
    # (one in ``spare``; every step with spare 1), the first and the weight change.
    assert in_place >= (steps - 2) * (spare - 1) // spare - 2


def test_an_older_state_can_be_resumed():
    """Acting again from an earlier (state, cache) - a branch - gives the uncached result and
    leaves the later outputs alone (the buffers are appended to by their latest output only)."""
    core = _core("gtrxl", SMALL_CORE_KWARGS["gtrxl"])
    x, first = _long_inputs(40)
    with torch.no_grad():
        state, cache = None, None
        history = []
        for t in range(10):
            _, state, cache = act(core, x[:, t : t + 1], state, first[:, t : t + 1], cache)
            history.append((state, cache))
        latest = {k: v.clone() for k, v in {**state, **cache}.items()}
        old_state, old_cache = history[6]
        y, branch, _ = act(core, x[:, 11:12], old_state, None, old_cache)
        y_plain, plain = core(x[:, 11:12], old_state, None)
        torch.testing.assert_close(y, y_plain)
        torch.testing.assert_close(branch["memory"], plain["memory"])
        assert torch.equal(branch["memory_mask"], plain["memory_mask"])
        for key, value in {**state, **cache}.items():
            assert torch.equal(value, latest[key])
        # ... and the latest pair still goes on (in place) as if nothing happened.
        y, _, _ = act(core, x[:, 10:11], state, first[:, 10:11], cache)
        torch.testing.assert_close(y, core(x[:, 10:11], state, first[:, 10:11])[0])


def test_carried_from_inference_mode_into_no_grad():
    """Buffers made under inference_mode cannot be written outside it: they are copied."""
    core = _core("trxl", SMALL_CORE_KWARGS["trxl"])
    x, first = _inputs()
    with torch.inference_mode():
        _, state, cache = act(core, x[:, :1], None, first[:, :1], None)
        _, state, cache = act(core, x[:, 1:2], state, first[:, 1:2], cache)
    with torch.no_grad():
        y, _, _ = act(core, x[:, 2:3], state, first[:, 2:3], cache)
        torch.testing.assert_close(y, core(x[:, 2:3], state, first[:, 2:3])[0])
