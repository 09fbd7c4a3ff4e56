"""ReLiT's chunked readout equals ``linear_scan`` over C, for every chunk size, in float64,
with episode starts inside chunks; so do the gradients."""

from __future__ import annotations

import pytest
import torch
from core_kwargs import SMALL_CORE_KWARGS

from memrl.models import make_core
from memrl.models.relit import UPDATE_RULES, ReLiTAttention
from memrl.models.relit_chunked import chunked_readout

B, T, D = 3, 11, 5


def _run(core, x, first, chunk):
    for block in core.blocks:
        block.attention.chunk = chunk
    x = x.clone().requires_grad_(True)
    torch.manual_seed(7)  # the same non-zero starting state for every run
    state = {k: v.clone().normal_() for k, v in core.initial_state(B, x.device).items()}
    state = {k: v.requires_grad_(True) for k, v in state.items()}
    y, new = core(x, state, first)
    loss = y.square().sum() + sum(v.square().sum() for v in new.values())
    core.zero_grad()
    loss.backward()
    grads = [x.grad] + [state[k].grad for k in sorted(state)]
    grads += [p.grad.clone() for p in core.parameters()]
    return y.detach(), {k: v.detach() for k, v in new.items()}, grads


@pytest.mark.parametrize("rule", UPDATE_RULES)
def test_chunked_equals_scan_for_every_chunk_size(rule):
    torch.manual_seed(0)
    core = make_core("relit", D, update_rule=rule, **SMALL_CORE_KWARGS["relit"]).double()
    x = torch.randn(B, T, D, dtype=torch.float64)
    first = torch.zeros(B, T, dtype=torch.bool)
    first[0, 3] = first[1, 5] = first[1, 6] = first[2, 0] = first[2, 10] = True
    y_ref, state_ref, grads_ref = _run(core, x, first, None)
    for chunk in range(1, T + 2):
        y, state, grads = _run(core, x, first, chunk)
        torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12, msg=f"chunk {chunk}")
        for key in state_ref:
            torch.testing.assert_close(state[key], state_ref[key], rtol=1e-12, atol=1e-12)
        for g, g_ref in zip(grads, grads_ref, strict=True):
            torch.testing.assert_close(g, g_ref, rtol=1e-10, atol=1e-12, msg=f"chunk {chunk}")


def test_episode_start_inside_a_chunk_cuts_the_memory():
    """The readout after a start does not depend on anything before it (the test can fail:
    without the start it does)."""
    torch.manual_seed(1)
    H, d, F = 2, 3, 4
    shape = (1, 6, H)
    args = [torch.rand(*shape, F), torch.randn(*shape, d), torch.rand(*shape, d)]
    args += [torch.rand(*shape, F)]
    key, value, beta, gamma = (a.double() for a in args)
    query = torch.rand(*shape, F, dtype=torch.float64)
    keep = torch.ones(1, 6, dtype=torch.float64)
    keep[0, 3] = 0
    out_a, _ = chunked_readout(
        "projected_sigmoid",
        key,
        value,
        beta,
        gamma,
        keep,
        query,
        torch.zeros(1, H, d, F, dtype=torch.float64),
        6,
    )
    key2 = key.clone()
    key2[:, :3] += 1.0
    out_b, _ = chunked_readout(
        "projected_sigmoid",
        key2,
        value,
        beta,
        gamma,
        keep,
        query,
        torch.randn(1, H, d, F, dtype=torch.float64),
        6,
    )
    torch.testing.assert_close(out_a[:, 3:], out_b[:, 3:])
    assert not torch.allclose(out_a[:, :3], out_b[:, :3])


def test_bad_chunk_names_the_argument():
    z = torch.zeros(1, 2, 1, 1)
    with pytest.raises(ValueError, match="chunk"):
        chunked_readout("outer_decay", z, z, z, z, torch.ones(1, 2), z, torch.zeros(1, 1, 1, 1), 0)


def test_default_is_chunked():
    assert ReLiTAttention.chunk == 16
