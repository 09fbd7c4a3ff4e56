"""Block-Recurrent Transformer specifics beyond the shared core contract."""

from __future__ import annotations

import pytest
import torch

from memrl.models import make_core

B, D_IN, W, S = 2, 5, 4, 3


def build(**kwargs):
    torch.manual_seed(0)
    cfg = dict(d_model=16, num_layers=2, num_heads=2, block_len=W, num_state=S, d_ff=32)
    cfg.update(kwargs)
    return make_core("brt", input_dim=D_IN, **cfg).double().eval()


def step_through(core, x, first, state=None):
    """Run one step at a time; return outputs [B, T, d] and the state after every step."""
    ys, states = [], []
    with torch.no_grad():
        for t in range(x.shape[1]):
            y, state = core(x[:, t : t + 1], state, first[:, t : t + 1])
            ys.append(y)
            states.append(state)
    return torch.cat(ys, dim=1), states


def test_state_vectors_change_only_at_block_ends():
    core = build()
    steps = 3 * W + 2
    x = torch.randn(B, steps, D_IN, dtype=torch.float64)
    first = torch.zeros(B, steps, dtype=torch.bool)
    first[:, 0] = True
    _, states = step_through(core, x, first)
    previous = core.initial_state(B)["state"].double()
    for t, state in enumerate(states):
        changed = not torch.equal(state["state"], previous)
        assert changed == ((t + 1) % W == 0), f"step {t}: state changed={changed}"
        assert state["pos"][:, 0].tolist() == [float((t + 1) % W)] * B
        previous = state["state"]


def test_mid_block_episode_start_resets_state_and_starts_a_block():
    core = build()
    steps = 2 * W + 3
    x = torch.randn(B, steps, D_IN, dtype=torch.float64)
    first = torch.zeros(B, steps, dtype=torch.bool)
    first[:, 0] = True
    start = W + 1  # one step into the second block
    first[0, start] = True
    _, states = step_through(core, x, first)
    # Row 0: the reset zeroes the state vectors and the new block counts from the start.
    assert torch.equal(states[start]["state"][0], torch.zeros_like(states[start]["state"][0]))
    assert states[start]["pos"][0, 0].item() == 1.0
    assert states[start]["pos"][1, 0].item() == float((start + 1) % W)
    # Row 0's next state update comes W steps after its episode start, not at the old grid.
    assert torch.equal(states[2 * W - 1]["state"][0], states[start]["state"][0])
    assert not torch.equal(states[start + W - 1]["state"][0], states[start]["state"][0])


@pytest.mark.parametrize("offset", [0, 2])
def test_block_length_call_equals_stepping(offset):
    core = build()
    x = torch.randn(B, offset + W, D_IN, dtype=torch.float64)
    first = torch.zeros(B, offset + W, dtype=torch.bool)
    first[:, 0] = True
    with torch.no_grad():
        _, state = core(x[:, :offset], None, first[:, :offset]) if offset else (None, None)
        y_block, s_block = core(x[:, offset:], state, first[:, offset:])
    y_step, states = step_through(core, x[:, offset:], first[:, offset:], state)
    torch.testing.assert_close(y_step, y_block, atol=1e-10, rtol=0)
    for key in s_block:
        torch.testing.assert_close(states[-1][key], s_block[key], atol=1e-10, rtol=0)


@pytest.mark.parametrize(
    "kwargs", [dict(gate="lstm"), dict(recurrent_layers=[0, 1]), dict(block_len=1)]
)
def test_variants_sequence_equals_steps(kwargs):
    core = build(**kwargs)
    steps = 17
    x = torch.randn(B, steps, D_IN, dtype=torch.float64)
    first = torch.zeros(B, steps, dtype=torch.bool)
    first[0, 6] = first[1, 11] = True
    with torch.no_grad():
        y, state = core(x, None, first)
    y_step, states = step_through(core, x, first)
    torch.testing.assert_close(y_step, y, atol=1e-10, rtol=0)
    for key in state:
        torch.testing.assert_close(states[-1][key], state[key], atol=1e-10, rtol=0)


@pytest.mark.parametrize(
    "kwargs,field",
    [
        (dict(gate="gru"), "gate"),
        (dict(recurrent_layers=[2]), "recurrent_layers"),
        (dict(block_len=0), "block_len"),
        (dict(num_heads=3), "num_heads"),
    ],
)
def test_bad_hyperparameter_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        build(**kwargs)
