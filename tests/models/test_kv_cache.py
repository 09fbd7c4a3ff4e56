"""K/V-cached acting of the window cores equals the uncached step and the one-call sequence,
across episode starts and across a weight change in the middle of an episode."""

from __future__ import annotations

import pytest
import torch
from core_kwargs import SMALL_CORE_KWARGS, VARIANTS

from memrl.models import make_core
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
