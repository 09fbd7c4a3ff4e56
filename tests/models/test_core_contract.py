"""The contract every memory core keeps, run for every registered core (and MQA variants).

A new core is tested the day it is registered: add its small configuration to core_kwargs.py.
"""

from __future__ import annotations

import pytest
import torch
from core_kwargs import SMALL_CORE_KWARGS, VARIANTS

from memrl.models import CORES, MASK_SUFFIX, make_core
from memrl.models.window import window_before

CASES = [(name, SMALL_CORE_KWARGS[name]) for name in CORES] + VARIANTS
IDS = [name if i < len(CORES) else f"{name}-mqa" for i, (name, _) in enumerate(CASES)]
B, T, D_IN = 3, 37, 5


def build(name, kwargs, dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    core = make_core(name, input_dim=D_IN, **kwargs).to(dtype)
    core.eval()
    return core


def random_first(batch, steps, seed, starts_per_row=3):
    """Several episode starts per row, at different steps in each row (never at step 0)."""
    g = torch.Generator().manual_seed(seed)
    first = torch.zeros(batch, steps, dtype=torch.bool)
    for b in range(batch):
        idx = torch.randperm(steps - 1, generator=g)[:starts_per_row] + 1
        first[b, idx] = True
    return first


def warm_state(core, dtype, seed=1):
    """A realistic random state: the core's own state after a random warm-up sequence."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, 11, D_IN, generator=g, dtype=dtype)
    first = random_first(B, 11, seed, starts_per_row=1)
    with torch.no_grad():
        _, state = core(x, None, first)
    return state


def assert_states_close(a, b, atol):
    assert set(a) == set(b)
    for key in a:
        if a[key].dtype == torch.bool:
            assert torch.equal(a[key], b[key]), key
        else:
            torch.testing.assert_close(a[key], b[key], atol=atol, rtol=0, msg=key)


def run_in_pieces(core, x, state, first, cuts):
    ys = []
    for start, end in zip([0, *cuts], [*cuts, x.shape[1]], strict=False):
        y, state = core(x[:, start:end], state, first[:, start:end])
        ys.append(y)
    return torch.cat(ys, dim=1), state


@pytest.mark.parametrize("dtype,atol", [(torch.float64, 1e-5), (torch.float32, 1e-4)])
@pytest.mark.parametrize("name,kwargs", CASES, ids=IDS)
def test_sequence_equals_steps(name, kwargs, dtype, atol):
    core = build(name, kwargs, dtype)
    state0 = warm_state(core, dtype)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(B, T, D_IN, generator=g, dtype=dtype)
    first = random_first(B, T, seed=3)
    with torch.no_grad():
        y_seq, s_seq = core(x, state0, first)
        y_step, s_step = run_in_pieces(core, x, state0, first, list(range(1, T)))
        y_split, s_split = run_in_pieces(core, x, state0, first, [20])
    assert y_seq.shape == (B, T, core.output_dim)
    torch.testing.assert_close(y_step, y_seq, atol=atol, rtol=0)
    torch.testing.assert_close(y_split, y_seq, atol=atol, rtol=0)
    assert_states_close(s_step, s_seq, atol)
    assert_states_close(s_split, s_seq, atol)


@pytest.mark.parametrize("name,kwargs", CASES, ids=IDS)
def test_no_leak_across_episode_start(name, kwargs):
    core = build(name, kwargs)
    state0 = warm_state(core, torch.float64)
    g = torch.Generator().manual_seed(4)
    x = torch.randn(B, T, D_IN, generator=g, dtype=torch.float64)
    first = torch.zeros(B, T, dtype=torch.bool)
    start = 23
    first[0, start] = True
    first[1, 9] = True
    with torch.no_grad():
        y, _ = core(x, state0, first)
        x2 = x.clone()
        x2[0, :start] += torch.randn(start, D_IN, generator=g, dtype=torch.float64)
        state2 = {k: v.clone() for k, v in state0.items()}
        for v in state2.values():
            if v.dtype != torch.bool:
                v[0] += torch.randn(v[0].shape, generator=g, dtype=v.dtype)
        y2, _ = core(x2, state2, first)
    # Row 0 before its start may change; from the start on, nothing may.
    assert not torch.allclose(y2[0, :start], y[0, :start])
    torch.testing.assert_close(y2[0, start:], y[0, start:], atol=1e-10, rtol=0)
    # Other rows are independent of row 0.
    torch.testing.assert_close(y2[1:], y[1:], atol=1e-10, rtol=0)


@pytest.mark.parametrize("name,kwargs", CASES, ids=IDS)
def test_gradients(name, kwargs):
    core = build(name, kwargs)
    core.train()
    state0 = warm_state(core, torch.float64)
    state0 = {k: v.clone().requires_grad_(v.is_floating_point()) for k, v in state0.items()}
    g = torch.Generator().manual_seed(5)
    x = torch.randn(B, 24, D_IN, generator=g, dtype=torch.float64)
    first = random_first(B, 24, seed=6, starts_per_row=1)
    y, _ = core(x, state0, first)
    (y * torch.randn(y.shape, generator=g, dtype=y.dtype)).sum().backward()
    for pname, p in core.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"no gradient reaches {pname}"
    for key, spec in core.state_spec().items():
        if spec.kind == "window":
            grad = state0[key].grad
            assert grad is None or not grad.any(), f"gradient flows into memory {key!r}"


@pytest.mark.parametrize("name,kwargs", CASES, ids=IDS)
def test_initial_state_matches_spec(name, kwargs):
    core = make_core(name, input_dim=D_IN, **kwargs)
    state = core.initial_state(4)
    expected = set()
    for key, spec in core.state_spec().items():
        assert spec.kind in ("carry", "window")
        assert state[key].shape == (4, *spec.shape)
        assert state[key].dtype == spec.dtype == torch.float32
        expected.add(key)
        if spec.kind == "window":
            assert len(spec.shape) == 3 and spec.slice_shape == (spec.shape[0], spec.shape[2])
            assert state[key + MASK_SUFFIX].shape == (4, spec.memory_len)
            assert state[key + MASK_SUFFIX].dtype == torch.bool
            expected.add(key + MASK_SUFFIX)
    assert set(state) == expected
    assert isinstance(core.output_dim, int) and core.output_dim > 0


@pytest.mark.parametrize("name,kwargs", CASES, ids=IDS)
def test_window_rebuilt_from_slices(name, kwargs):
    core = build(name, kwargs)
    window_keys = [k for k, s in core.state_spec().items() if s.kind == "window"]
    g = torch.Generator().manual_seed(7)
    steps = 30
    x = torch.randn(B, steps, D_IN, generator=g, dtype=torch.float64)
    first = random_first(B, steps, seed=8, starts_per_row=2)
    first[:, 0] = True
    with torch.no_grad():
        slices = core.step_slices(x, None, first)
        if not window_keys:
            assert slices == {}
            return
        assert set(slices) == set(window_keys)
        state = None
        for t in range(steps + 1):
            for key in window_keys:
                memory_len = core.state_spec()[key].memory_len
                memory, mask = window_before(slices[key], first, t, memory_len)
                if state is not None:
                    assert torch.equal(mask, state[key + MASK_SUFFIX]), (key, t)
                    torch.testing.assert_close(memory, state[key], atol=1e-10, rtol=0)
            if t < steps:
                _, state = core(x[:, t : t + 1], state, first[:, t : t + 1])


@pytest.mark.parametrize("name,kwargs", CASES, ids=IDS)
def test_bf16_autocast_runs(name, kwargs):
    core = make_core(name, input_dim=D_IN, **kwargs)
    x = torch.randn(2, 9, D_IN)
    first = random_first(2, 9, seed=9, starts_per_row=1)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        y, state = core(x, None, first)
        y2, _ = core(x, state, first)
    assert torch.isfinite(y.float()).all() and torch.isfinite(y2.float()).all()


@pytest.mark.parametrize("name,kwargs", CASES[: len(CORES)], ids=IDS[: len(CORES)])
def test_torch_compile_matches_eager(name, kwargs):
    # aot_eager traces through dynamo and AOTAutograd without a C++ build: it checks that the
    # forward is compilable (graph breaks allowed) while staying cheap enough for CPU CI.
    core = build(name, kwargs, dtype=torch.float32)
    x = torch.randn(2, 9, D_IN)
    first = random_first(2, 9, seed=10, starts_per_row=1)
    compiled = torch.compile(core, backend="aot_eager")
    with torch.no_grad():
        y, _ = core(x, None, first)
        yc, _ = compiled(x, None, first)
    torch.testing.assert_close(yc, y, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name,kwargs", CASES[: len(CORES)], ids=IDS[: len(CORES)])
def test_bad_input_names_the_argument(name, kwargs):
    core = make_core(name, input_dim=D_IN, **kwargs)
    with pytest.raises(ValueError, match="x must be"):
        core(torch.randn(2, D_IN), None)
    with pytest.raises(ValueError, match="input_dim"):
        core(torch.randn(2, 3, D_IN + 1), None)
    with pytest.raises(ValueError, match="first must be"):
        core(torch.randn(2, 3, D_IN), None, torch.zeros(2, 4, dtype=torch.bool))
    if core.state_spec():  # a state of the wrong batch size (an empty state has none)
        with pytest.raises(ValueError, match="state"):
            core(torch.randn(2, 3, D_IN), core.initial_state(3))
    with pytest.raises(ValueError, match="state"):
        core(torch.randn(2, 3, D_IN), {"not_a_field": torch.zeros(2)})
    with pytest.raises(ValueError, match="unknown argument"):
        make_core(name, input_dim=D_IN, not_a_hyperparameter=1)


def test_unknown_core_lists_valid_names():
    with pytest.raises(ValueError, match="valid cores: gru, lstm"):
        make_core("mamba", input_dim=4)
