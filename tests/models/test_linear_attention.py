"""ReLiT / AReLiT specifics beyond the core contract: the scan, the equations, state size, O(1)."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from memrl.models import make_core
from memrl.models.linear_attention import linear_scan

D_IN = 5
SMALL = dict(d_model=16, num_layers=2, num_heads=2, d_head=8, d_ff=32)


def loop_scan(decays, updates, initial):
    """The recurrence h_t = (prod decays)_t * h_{t-1} + u_t, one step at a time."""
    h, out = initial, []
    for t in range(updates.shape[1]):
        a = decays[0][:, t]
        for extra in decays[1:]:
            a = a * extra[:, t]
        h = a * h + updates[:, t]
        out.append(h)
    return torch.stack(out, dim=1)


@pytest.mark.parametrize("decay_shape", ["full", "broadcast"])
@pytest.mark.parametrize("steps", [2, 3, 17])
def test_one_factor_scan_has_the_loop_gradients(steps, decay_shape):
    """One decay factor takes the hand-written backward (``_LoopScan``): values and gradients
    of every input equal autograd's over the plain loop, with a broadcast decay, resets and
    a carried-in state."""
    g = torch.Generator().manual_seed(steps)
    batch, rows, cols = 3, 4, 5
    cols_a = cols if decay_shape == "full" else 1
    decay = torch.rand(batch, steps, rows, cols_a, generator=g, dtype=torch.float64)
    decay[1, steps // 2] = 0.0  # an episode start
    updates = torch.randn(batch, steps, rows, cols, generator=g, dtype=torch.float64)
    initial = torch.randn(batch, rows, cols, generator=g, dtype=torch.float64)
    inputs = [x.requires_grad_() for x in (decay, updates, initial)]
    got = linear_scan([decay], updates, initial, method="sequential")
    want = loop_scan([decay], updates, initial)
    torch.testing.assert_close(got, want, atol=1e-12, rtol=0)
    weights = torch.randn(got.shape, generator=g, dtype=torch.float64)
    got_grads = torch.autograd.grad((got * weights).sum(), inputs)
    want_grads = torch.autograd.grad((want * weights).sum(), inputs)
    for mine, loop in zip(got_grads, want_grads, strict=True):
        assert mine.shape == loop.shape
        torch.testing.assert_close(mine, loop, atol=1e-12, rtol=0)
    # Only what needs a gradient gets one; dtypes promote as the loop's would.
    half = linear_scan([decay.detach().float()], updates, initial.detach())
    assert half.dtype == torch.float64
    (grad,) = torch.autograd.grad(half.sum(), [updates])
    assert grad.shape == updates.shape


@pytest.mark.parametrize("method", ["parallel", "sequential"])
@pytest.mark.parametrize("steps", [1, 2, 3, 8, 37, 64])
def test_scan_equals_loop_with_resets(steps, method):
    g = torch.Generator().manual_seed(steps)
    batch, rows, cols = 3, 4, 6
    left = torch.rand(batch, steps, rows, 1, generator=g, dtype=torch.float64)
    right = torch.rand(batch, steps, 1, cols, generator=g, dtype=torch.float64)
    # Episode starts: decay 0 at those steps (one start per row at a different step).
    reset = torch.zeros(batch, steps, 1, 1, dtype=torch.float64)
    for b in range(batch):
        reset[b, (b * 7 + 1) % steps] = 1.0
    right = right * (1 - reset)
    updates = torch.randn(batch, steps, rows, cols, generator=g, dtype=torch.float64)
    initial = torch.randn(batch, rows, cols, generator=g, dtype=torch.float64)
    inputs = [x.requires_grad_() for x in (left, right, updates, initial)]
    got = linear_scan([left, right], updates, initial, method=method)
    want = loop_scan([left, right], updates, initial)
    torch.testing.assert_close(got, want, atol=1e-12, rtol=0)
    # Gradients too (both split, reshape and unbind instead of slicing: their own backward).
    weights = torch.randn(got.shape, generator=g, dtype=torch.float64)
    got_grads = torch.autograd.grad((got * weights).sum(), inputs)
    want_grads = torch.autograd.grad((want * weights).sum(), inputs)
    for mine, loop in zip(got_grads, want_grads, strict=True):
        torch.testing.assert_close(mine, loop, atol=1e-10, rtol=0)
    got = got.detach()
    # The cut is exact: a reset step's state ignores the initial state entirely.
    for b in range(batch):
        t = (b * 7 + 1) % steps
        torch.testing.assert_close(got[b, t], updates[b, t], atol=0, rtol=0)


def build(name, dtype=torch.float64, **kwargs):
    torch.manual_seed(0)
    if name == "arelit":
        kwargs.setdefault("r", 3)
    return make_core(name, input_dim=D_IN, **SMALL, nu=2, **kwargs).to(dtype).eval()


def reference_attention(core, layer, u, first, state, ticks):
    """The paper's equations for one layer, step by step, written naively from the features.

    ReLiT (projected_sigmoid): C_t = C * (1 - beta (x) gamma) + (v (x) phi(k)) * (beta (x) gamma),
    s_t = s * (1 - gamma) + gamma phi(k); outer_decay: C_t = ((1-beta)(1-gamma)^T) * C + v' k'^T.
    a = C phi(q) / (s . phi(q) + eps).
    AReLiT: per cosine j, kt_j and vt_j decay by (1-gamma), (1-beta) and add cos(w_j n) k', v';
    a = sum_j vt_j (kt_j . phi(q)) / (2 r s . phi(q) + eps).
    """
    attention = core.blocks[layer].attention
    f = attention.features(u)
    outs = []
    mem = {k: v[:, layer].clone() for k, v in state.items() if k != "tick"}
    for t in range(u.shape[1]):
        keep = (~first[:, t]).to(u.dtype).view(-1, 1, 1)
        k, v, q = f["key"][:, t], f["value"][:, t], f["query"][:, t]
        if core.name == "relit":
            beta, gamma = f["beta"][:, t], f["gamma"][:, t]
            mem["s"] = (1 - gamma) * keep * mem["s"] + gamma * k
            if core.update_rule == "projected_sigmoid":
                write = beta.unsqueeze(-1) * gamma.unsqueeze(-2)
                mem["C"] = mem["C"] * (1 - write) * keep.unsqueeze(-1) + write * (
                    v.unsqueeze(-1) * k.unsqueeze(-2)
                )
            else:
                decay = (1 - beta).unsqueeze(-1) * ((1 - gamma) * keep).unsqueeze(-2)
                mem["C"] = decay * mem["C"] + (beta * v).unsqueeze(-1) * (gamma * k).unsqueeze(-2)
            num = (mem["C"] @ q.unsqueeze(-1)).squeeze(-1)
            den = (mem["s"] * q).sum(-1, keepdim=True) + core.eps
        else:
            kd, vd = f["key_decay"][:, t] * keep, f["value_decay"][:, t] * keep
            mem["s"] = kd * mem["s"] + k
            omegas = torch.linspace(-math.pi, math.pi, core.r, dtype=torch.float64)
            cos = torch.cos(omegas[None, :] * ticks[:, t, None]).to(u.dtype)  # [B, r]
            cos = cos[:, None, :, None]
            keys = kd.unsqueeze(2) * core.expand_components(mem["keys"]) + cos * k.unsqueeze(2)
            values = vd.unsqueeze(2) * core.expand_components(mem["values"]) + cos * v.unsqueeze(2)
            scores = (keys * q.unsqueeze(2)).sum(-1)  # [B, H, r]
            num = (values * scores.unsqueeze(-1)).sum(2)
            den = 2 * core.r * (mem["s"] * q).sum(-1, keepdim=True) + core.eps
            # Only the distinct components are stored.
            mem["keys"], mem["values"] = keys[:, :, core.distinct], values[:, :, core.distinct]
        outs.append(attention.project((num / den).flatten(1)))
    return torch.stack(outs, dim=1), mem


@pytest.mark.parametrize(
    "name,kwargs",
    [
        ("relit", {}),
        ("relit", dict(update_rule="outer_decay")),
        ("arelit", {}),
    ],
    ids=["relit", "relit-outer_decay", "arelit"],
)
def test_layer_follows_the_paper_equations(name, kwargs):
    core = build(name, **kwargs)
    g = torch.Generator().manual_seed(11)
    steps = 13
    with torch.no_grad():
        _, state = core(torch.randn(2, 6, D_IN, generator=g, dtype=torch.float64), None)
        u = torch.randn(2, steps, core.d_model, generator=g, dtype=torch.float64)
        first = torch.zeros(2, steps, dtype=torch.bool)
        first[0, 4] = first[1, 9] = True
        # Step index within the episode, continuing from the warm-up's 6 steps.
        ticks = torch.zeros(2, steps, dtype=torch.float64)
        for b in range(2):
            n = 6
            for t in range(steps):
                n = 1 if first[b, t] else n + 1
                ticks[b, t] = n
        keep = (~first).to(torch.float64)
        layer = 1
        layer_state = {k: v[:, layer] for k, v in state.items() if k != "tick"}
        context = core._context(state, keep)[0]
        got, got_state = core.blocks[layer].attention(u, keep, layer_state, context)
        want, want_state = reference_attention(core, layer, u, first, state, ticks)
    torch.testing.assert_close(got, want, atol=1e-10, rtol=0)
    for key, value in want_state.items():
        torch.testing.assert_close(got_state[key], value, atol=1e-10, rtol=0)


def state_numel(name, nu, d_head, r=2, omegas="uniform"):
    kwargs = dict(SMALL, d_head=d_head, nu=nu)
    if name == "arelit":
        kwargs.update(r=r, omegas=omegas)
    core = make_core(name, input_dim=D_IN, **kwargs)
    return sum(math.prod(spec.shape) for spec in core.state_spec().values())


def test_arelit_state_grows_linearly_where_relit_grows_quadratically():
    layers, heads, r = SMALL["num_layers"], SMALL["num_heads"], 2
    for nu in (1, 2, 4):
        for d_head in (4, 8, 16):
            features = nu * d_head
            relit = state_numel("relit", nu, d_head)
            arelit = state_numel("arelit", nu, d_head, r)
            assert relit == layers * heads * (d_head * features + features)
            assert arelit == layers * heads * (r * features + r * d_head + features) + 1
    # The authors' frequencies at r = 2 give one distinct component, stored once.
    relit_like = layers * heads * (features + d_head + features) + 1
    assert state_numel("arelit", nu, d_head, r, omegas="authors") == relit_like
    # Doubling nu * d_head twice: ReLiT's memory grows ~ (nu d_h) * d_h, AReLiT's ~ nu d_h.
    relit_growth = state_numel("relit", 4, 16) / state_numel("relit", 1, 16)
    arelit_growth = state_numel("arelit", 4, 16) / state_numel("arelit", 1, 16)
    assert relit_growth > 3.9
    assert arelit_growth < relit_growth
    d_growth_relit = state_numel("relit", 2, 32) / state_numel("relit", 2, 8)
    d_growth_arelit = state_numel("arelit", 2, 32) / state_numel("arelit", 2, 8)
    # 4x d_head: ReLiT's state grows ~16x (quadratic), AReLiT's at most 4x (linear).
    assert d_growth_relit > 14 and d_growth_arelit <= 4.0


class _OpRecorder(TorchDispatchMode):
    """Records (op, input shapes) of every aten call: the work one forward does."""

    def __init__(self):
        super().__init__()
        self.calls: list[tuple[str, tuple]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        shapes = tuple(tuple(a.shape) for a in args if isinstance(a, torch.Tensor))
        self.calls.append((str(func), shapes))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("name", ["relit", "arelit"])
def test_single_step_work_does_not_depend_on_history(name):
    core = build(name, dtype=torch.float32)
    g = torch.Generator().manual_seed(12)
    x_step = torch.randn(2, 1, D_IN, generator=g)
    recorded = []
    for history in (3, 41):
        with torch.no_grad():
            _, state = core(torch.randn(2, history, D_IN, generator=g), None)
            assert {k: v.shape for k, v in state.items()} == {
                k: (2, *spec.shape) for k, spec in core.state_spec().items()
            }
            with _OpRecorder() as rec:
                core(x_step, state)
        recorded.append(rec.calls)
        # No tensor in the step has a dimension of the history's length (41 is no model size).
        if history == 41:
            assert all(41 not in shape for _, shapes in rec.calls for shape in shapes)
    assert recorded[0] == recorded[1]
    # The step takes the scan's single-update path: no concatenation rounds.
    assert not any("cat" in op for op, _ in recorded[0])


def test_arelit_tick_stays_small_and_exact():
    core = build("arelit", dtype=torch.float32, r=5)
    x = torch.randn(2, 50, D_IN)
    first = torch.zeros(2, 50, dtype=torch.bool)
    first[1, 45] = True
    with torch.no_grad():
        _, state = core(x, None, first)
    # Row 0 ran 50 steps, row 1 ran 5 since its start; the period of cos(w n) is 2(r-1) = 8.
    assert state["tick"].flatten().tolist() == [50 % 8, 5 % 8]


@pytest.mark.parametrize("name", ["relit", "arelit"])
def test_zero_query_features_give_finite_output(name):
    core = build(name, dtype=torch.float32)
    with torch.no_grad():
        for block in core.blocks:
            # Make the nu-part of phi(q) zero everywhere: phi(q) = 0, so s . phi(q) = 0 exactly.
            features = block.attention.features
            nu, heads = core.nu, core.num_heads
            if name == "relit":  # relu(B q + b_B) with B = 0, b_B = -1
                features.second_weight[:, core.d_head :] = 0.0
                features.second_bias[:, core.d_head :] = -1.0
            else:  # relu(p2) with W_p2 = 0, b_p2 = -1
                p = features.p123
                p.weight.view(heads, 3, nu, -1)[:, 1] = 0.0
                p.bias.view(heads, 3, nu)[:, 1] = -1.0
        y, state = core(torch.randn(2, 7, D_IN), None)
    assert torch.isfinite(y).all()
    assert all(torch.isfinite(v).all() for v in state.values())


def test_bad_hyperparameters_name_the_field():
    with pytest.raises(ValueError, match="r must be"):
        make_core("arelit", input_dim=D_IN, r=0)
    with pytest.raises(ValueError, match="nu must be"):
        make_core("relit", input_dim=D_IN, nu=0)
    with pytest.raises(ValueError, match="eps must be"):
        make_core("relit", input_dim=D_IN, eps=0.0)
    with pytest.raises(ValueError, match="update_rule must be one of"):
        make_core("relit", input_dim=D_IN, update_rule="gated")
    with pytest.raises(ValueError, match="omegas must be one of"):
        make_core("arelit", input_dim=D_IN, omegas="random")
