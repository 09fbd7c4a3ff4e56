"""Each core against an independent, literal implementation of its authors' equations.

The references below are written from the authors' code, one step, one sample and one head at a
time, in float64 with plain vector operations: ReLiT and AReLiT from subho406/agalite (cd10e66,
``src/models/relit/relit.py`` with ``update_rule: projected_sigmoid`` and ``pp_relu``, and
``src/models/relit/arelit.py``); BRT from the paper (Hutchins et al. 2022) and
google-research/meliad (``transformer_layer.py``: keys/values of the previous block and the
current one, causal within the current block). The only link to memrl is a function that reads
memrl's (fused) weights into the references' per-matrix dicts; the references never call memrl.
"""

from __future__ import annotations

import math

import pytest
import torch

from memrl.models import make_core

D_IN = 3


# --- literal building blocks ---------------------------------------------------------------
def layer_norm(x, p):
    mean = x.mean()
    var = ((x - mean) ** 2).mean()
    return (x - mean) / torch.sqrt(var + p["eps"]) * p["w"] + p["b"]


def dense(x, p):
    return p["w"] @ x + (p["b"] if p.get("b") is not None else 0.0)


def relu(x):
    return torch.clamp(x, min=0.0)


def sigmoid(x):
    return 1.0 / (1.0 + torch.exp(-x))


def gru_gate(x, y, p):
    """The authors' GRUGatingUnit: six separate matrices and the bias b_g."""
    r = sigmoid(p["Wr"] @ y + p["Ur"] @ x)
    z = sigmoid(p["Wz"] @ y + p["Uz"] @ x - p["bg"])
    h = torch.tanh(p["Wg"] @ y + p["Ug"] @ (r * x))
    return (1 - z) * x + z * h


def outer_flat(a, b):
    return torch.stack([a[i] * b for i in range(a.shape[0])]).flatten()


# --- reading memrl's weights ---------------------------------------------------------------
def ln_params(norm):
    return {"w": norm.weight.detach(), "b": norm.bias.detach(), "eps": norm.eps}


def linear_params(linear, rows=None):
    w = linear.weight.detach()
    b = linear.bias.detach() if linear.bias is not None else None
    if rows is not None:
        w = w[rows]
        b = None if b is None else b[rows]
    return {"w": w, "b": b}


def gate_params(gate):
    d = gate.candidate.weight.shape[0]
    wo, ws = gate.from_output.weight.detach(), gate.from_stream.weight.detach()
    return {
        "Wr": wo[:d],
        "Wz": wo[d : 2 * d],
        "Wg": wo[2 * d :],
        "Ur": ws[:d],
        "Uz": ws[d:],
        "Ug": gate.candidate.weight.detach(),
        "bg": gate.gate_bias.detach(),
    }


def gated_block_params(block):
    return {
        "ln1": ln_params(block.norm1),
        "ln2": ln_params(block.norm2),
        "gate1": gate_params(block.gate1),
        "gate2": gate_params(block.gate2),
        "ff1": linear_params(block.ff[0]),
        "ff2": linear_params(block.ff[2]),
        "project": linear_params(block.attention.project),
    }


def relit_params(core):
    d, nu, heads = core.d_head, core.nu, core.num_heads
    layers = []
    for block in core.blocks:
        f = block.attention.features
        w = f.first.weight.detach().view(heads, 5 * d + 2 * nu, -1)
        b = f.first.bias.detach().view(heads, 5 * d + 2 * nu)
        per_head = []
        for h in range(heads):
            names = ["k", "v", "beta", "gamma", "q"]
            head = {
                n: {"w": w[h, i * d : (i + 1) * d], "b": b[h, i * d : (i + 1) * d]}
                for i, n in enumerate(names)
            }
            head["p1"] = {"w": w[h, 5 * d : 5 * d + nu], "b": b[h, 5 * d : 5 * d + nu]}
            head["p3"] = {"w": w[h, 5 * d + nu :], "b": b[h, 5 * d + nu :]}
            sw, sb = f.second_weight.detach()[h], f.second_bias.detach()[h]
            head["qa"] = {"w": sw[:d], "b": sb[:d]}
            head["qb"] = {"w": sw[d:], "b": sb[d:]}
            per_head.append(head)
        layers.append({**gated_block_params(block), "heads": per_head})
    return {"embed": linear_params(core.embed), "layers": layers}


def arelit_params(core):
    d, nu, heads = core.d_head, core.nu, core.num_heads
    layers = []
    for block in core.blocks:
        f = block.attention.features
        layers.append(
            {
                **gated_block_params(block),
                "kqvbg": linear_params(f.kqvbg),
                "p123": linear_params(f.p123),
            }
        )
    return {"embed": linear_params(core.embed), "layers": layers, "d": d, "nu": nu, "H": heads}


# --- ReLiT (authors' MemoryLayer, projected_sigmoid, pp_relu kernel) ----------------------
def relit_reference(params, x, first, heads, d, nu, eps):
    """x [T, D_IN] one sample; first [T] bool. Returns outputs [T, d_model]."""
    n_layers = len(params["layers"])
    c = [[torch.zeros(d, d * nu, dtype=x.dtype) for _ in range(heads)] for _ in range(n_layers)]
    s = [[torch.zeros(d * nu, dtype=x.dtype) for _ in range(heads)] for _ in range(n_layers)]
    outs = []
    for t in range(x.shape[0]):
        u = dense(x[t], params["embed"])  # use_dense=True, no activation in ReLiT
        for i, lp in enumerate(params["layers"]):
            ln1 = layer_norm(u, lp["ln1"])
            head_outs = []
            for h, hp in enumerate(lp["heads"]):
                key = outer_flat(relu(dense(ln1, hp["k"])), relu(dense(ln1, hp["p1"])))
                value = dense(ln1, hp["v"])
                beta = sigmoid(dense(ln1, hp["beta"]))
                gamma = outer_flat(sigmoid(dense(ln1, hp["gamma"])), sigmoid(dense(ln1, hp["p3"])))
                if first[t]:  # reset_on_terminate: the memory is zeroed before the step
                    c[i][h] = torch.zeros_like(c[i][h])
                    s[i][h] = torch.zeros_like(s[i][h])
                c_w = torch.outer(beta, gamma)
                c[i][h] = c[i][h] * (1 - c_w) + torch.outer(value, key) * c_w
                s[i][h] = s[i][h] * (1 - gamma) + key * gamma
                q = dense(ln1, hp["q"])
                q_phi = outer_flat(relu(dense(q, hp["qa"])), relu(dense(q, hp["qb"])))
                head_outs.append((c[i][h] @ q_phi) / (s[i][h] @ q_phi + eps))
            attn = relu(dense(torch.cat(head_outs), lp["project"]))
            g1 = gru_gate(u, attn, lp["gate1"])
            ff = relu(dense(relu(dense(layer_norm(g1, lp["ln2"]), lp["ff1"])), lp["ff2"]))
            u = gru_gate(g1, ff, lp["gate2"])
        outs.append(u)
    return torch.stack(outs)


# --- AReLiT (authors' AttentionORLiTLayer) -------------------------------------------------
def arelit_reference(params, x, first, r, eps, omegas, authors_tick):
    """x [T, D_IN]; first [T]. ``authors_tick``: the authors' tick (starts at 1, +1 before each
    step, never reset); otherwise n counts steps within the episode (1 at its first step)."""
    d, nu, heads = params["d"], params["nu"], params["H"]
    n_layers = len(params["layers"])
    tk = [
        [[torch.zeros(nu * d, dtype=x.dtype) for _ in range(r)] for _ in range(heads)]
        for _ in range(n_layers)
    ]
    tv = [
        [[torch.zeros(d, dtype=x.dtype) for _ in range(r)] for _ in range(heads)]
        for _ in range(n_layers)
    ]
    s = [[torch.zeros(nu * d, dtype=x.dtype) for _ in range(heads)] for _ in range(n_layers)]
    tick, n = 1.0, 0
    outs = []
    for t in range(x.shape[0]):
        tick += 1.0
        n = 1 if first[t] else n + 1
        phase = tick if authors_tick else float(n)
        u = relu(dense(x[t], params["embed"]))  # embedding_act=True in AReLiT
        for i, lp in enumerate(params["layers"]):
            ln1 = layer_norm(u, lp["ln1"])
            kqvbg = dense(ln1, lp["kqvbg"]).view(heads, 5 * d)
            p123 = dense(ln1, lp["p123"]).view(heads, 3 * nu)
            head_outs = []
            for h in range(heads):
                k, q, v, b, g = (kqvbg[h, j * d : (j + 1) * d] for j in range(5))
                p1, p2, p3 = (p123[h, j * nu : (j + 1) * nu] for j in range(3))
                key = outer_flat(relu(p1), relu(k))  # einsum chd,chn->chnd: [nu, d]
                query = outer_flat(relu(p2), relu(q))
                gamma = outer_flat(sigmoid(p3), sigmoid(g))
                beta = sigmoid(b)
                value = v * beta
                key = key * gamma
                keep = 0.0 if first[t] else 1.0
                disc_g, disc_b = (1 - gamma) * keep, (1 - beta) * keep
                kv = torch.zeros(d, dtype=x.dtype)
                for j in range(r):
                    osc = math.cos(phase * omegas[j])
                    tk[i][h][j] = disc_g * tk[i][h][j] + osc * key
                    tv[i][h][j] = disc_b * tv[i][h][j] + osc * value
                    kv = kv + tv[i][h][j] * (tk[i][h][j] @ query)
                s[i][h] = disc_g * s[i][h] + key
                head_outs.append(kv / (2 * r * (s[i][h] @ query) + eps))
            attn = relu(dense(torch.cat(head_outs), lp["project"]))
            g1 = gru_gate(u, attn, lp["gate1"])
            ff = relu(dense(relu(dense(layer_norm(g1, lp["ln2"]), lp["ff1"])), lp["ff2"]))
            u = gru_gate(g1, ff, lp["gate2"])
        outs.append(u)
    return torch.stack(outs)


# --- the tests -------------------------------------------------------------------------------
B, T = 2, 14
SMALL = dict(d_model=8, num_layers=2, num_heads=2, d_head=4, nu=2, d_ff=12)


def inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, T, D_IN, generator=g, dtype=torch.float64)
    first = torch.zeros(B, T, dtype=torch.bool)
    first[:, 0] = True
    first[0, 5] = first[1, 9] = first[1, 10] = True
    return x, first


def scrambled_gate_biases(core):
    """Move the gates away from the identity so the memory path dominates the output."""
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for module in core.modules():
            if hasattr(module, "gate_bias"):
                module.gate_bias.copy_(torch.randn(module.gate_bias.shape, generator=g) - 2.0)


def test_relit_equals_authors_reference():
    torch.manual_seed(0)
    core = (
        make_core("relit", input_dim=D_IN, feature_map="relu", **SMALL).double().eval()
    )  # the authors' pp_relu kernel
    scrambled_gate_biases(core)
    x, first = inputs()
    with torch.no_grad():
        y, _ = core(x, None, first)
        params = relit_params(core)
        for b in range(B):
            want = relit_reference(params, x[b], first[b], 2, 4, 2, core.eps)
            torch.testing.assert_close(y[b], want, atol=1e-10, rtol=0)


@pytest.mark.parametrize(
    "r,omegas,authors_tick",
    [(2, "authors", True), (3, "authors", True), (5, "authors", False), (3, "uniform", False)],
)
def test_arelit_equals_authors_reference(r, omegas, authors_tick):
    """The authors' frequencies at r <= 3 (all 0 or +-pi) give the authors' outputs exactly even
    with their never-reset tick; other frequencies are checked with the per-episode index."""
    torch.manual_seed(0)
    core = (
        make_core("arelit", input_dim=D_IN, r=r, omegas=omegas, feature_map="relu", **SMALL)
        .double()
        .eval()
    )  # the authors' relu feature map
    scrambled_gate_biases(core)
    x, first = inputs(1)
    if omegas == "authors":
        freq = torch.linspace(-math.pi, math.pi, r, dtype=torch.float64).tolist()
    else:
        freq = [math.pi * j / r for j in range(r)]
    with torch.no_grad():
        y, _ = core(x, None, first)
        params = arelit_params(core)
        for b in range(B):
            want = arelit_reference(params, x[b], first[b], r, core.eps, freq, authors_tick)
            torch.testing.assert_close(y[b], want, atol=1e-10, rtol=0)


def test_arelit_stores_only_distinct_components():
    assert make_core("arelit", input_dim=D_IN, r=2).num_components == 1
    assert make_core("arelit", input_dim=D_IN, r=5).num_components == 3  # |omega| in {pi, pi/2, 0}
    assert make_core("arelit", input_dim=D_IN, r=4, omegas="uniform").num_components == 4


# --- Block-Recurrent Transformer (Hutchins et al. 2022; meliad's sliding window) -----------
def gelu(x):
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def softmax_attend(q, keys, values, bias=None):
    """q [e]; keys, values: lists of [e]; bias: list of floats or None."""
    scores = torch.stack([q @ k for k in keys]) / math.sqrt(q.shape[0])
    if bias is not None:
        scores = scores + torch.stack(bias)
    w = torch.exp(scores - scores.max())
    w = w / w.sum()
    return sum(w[j] * values[j] for j in range(len(values)))


def brt_gate(c, h, gate, kind):
    if kind == "fixed":
        keep = sigmoid(gate.keep_bias.detach())
        return c * keep + dense(h, linear_params(gate.candidate)) * (1 - keep)
    z, i, f = dense(h, linear_params(gate.proj)).chunk(3)
    return c * sigmoid(f + 1) + torch.tanh(z) * sigmoid(i - 1)


def brt_reference(core, x, first, gate_kind):
    """One sample, step by step. Reads weights straight off the layers (plain tensors)."""
    W, heads = core.block_len, core.layers[0].heads
    d = core.d_model
    e = d // heads
    lin = linear_params
    inputs = None  # per layer: the episode's per-layer inputs so far
    states: dict[int, torch.Tensor] = {}
    n = 0
    outs = []
    for t in range(x.shape[0]):
        if first[t] or inputs is None:
            inputs = [[] for _ in core.layers]
            states = {i: core.layers[i].initial.detach().clone() for i in core.recurrent_layers}
            n = 0
        block_start = (n // W) * W  # blocks start at the episode start and every W steps
        window_start = max(block_start - W, 0)  # the previous block, if any, and this one
        u = dense(x[t], lin(core.in_proj))
        for i, layer in enumerate(core.layers):
            inputs[i].append(u)
            ln = ln_params(layer.norm)
            q = dense(layer_norm(u, ln), lin(layer.query))
            kv = [dense(layer_norm(v, ln), lin(layer.key_value)) for v in inputs[i][window_start:]]
            keys, values = [k[:d] for k in kv], [k[d:] for k in kv]
            rel = layer.rel_bias.detach()
            positions = range(window_start, n + 1)
            per_head = []
            for h in range(heads):
                sl = slice(h * e, (h + 1) * e)
                bias = [rel[h, n - j] for j in positions]
                a = softmax_attend(q[sl], [k[sl] for k in keys], [v[sl] for v in values], bias)
                if layer.recurrent:
                    qc = dense(layer_norm(u, ln), lin(layer.query_cross))
                    sk, sv = state_keys_values(layer, states[i])
                    a = torch.cat(
                        [a, softmax_attend(qc[sl], [k[sl] for k in sk], [v[sl] for v in sv])]
                    )
                per_head.append(a)
            u = u + dense(torch.cat(per_head), lin(layer.out))
            ff = dense(
                gelu(dense(layer_norm(u, ln_params(layer.norm_ff)), lin(layer.ff[0]))),
                lin(layer.ff[2]),
            )
            u = u + ff
        outs.append(layer_norm(u, ln_params(core.out_norm)))
        if n % W == W - 1:  # the block is complete: the horizontal direction
            for i in core.recurrent_layers:
                layer = core.layers[i]
                ln = ln_params(layer.norm)
                kv = [
                    dense(layer_norm(v, ln), lin(layer.key_value)) for v in inputs[i][block_start:]
                ]
                bk, bv = [k[:d] for k in kv], [k[d:] for k in kv]
                states[i] = state_update(layer, states[i], bk, bv, heads, gate_kind)
        n += 1
    return torch.stack(outs)


def state_normed(layer, c):
    p = ln_params(layer.state_norm)
    ids = layer.state_ids.detach()
    return [layer_norm(c[j], p) + ids[j] for j in range(c.shape[0])]  # IDs after the norm


def state_keys_values(layer, c):
    d = c.shape[1]
    kv = [dense(v, linear_params(layer.state_key_value)) for v in state_normed(layer, c)]
    return [k[:d] for k in kv], [k[d:] for k in kv]


def state_update(layer, c, block_keys, block_values, heads, gate_kind):
    d = c.shape[1]
    e = d // heads
    cn = state_normed(layer, c)
    sk, sv = state_keys_values(layer, c)
    new = []
    for j in range(c.shape[0]):
        qs = dense(cn[j], linear_params(layer.state_query_self))
        qc = dense(cn[j], linear_params(layer.state_query_cross))
        per_head = []
        for h in range(heads):
            sl = slice(h * e, (h + 1) * e)
            a_self = softmax_attend(qs[sl], [k[sl] for k in sk], [v[sl] for v in sv])
            a_cross = softmax_attend(
                qc[sl], [k[sl] for k in block_keys], [v[sl] for v in block_values]
            )
            per_head.append(torch.cat([a_self, a_cross]))
        attended = dense(torch.cat(per_head), linear_params(layer.state_out))
        cj = brt_gate(c[j], attended, layer.state_gate, gate_kind)
        ff_in = layer_norm(cj, ln_params(layer.state_norm_ff))
        ff = dense(
            gelu(dense(ff_in, linear_params(layer.state_ff[0]))), linear_params(layer.state_ff[2])
        )
        new.append(brt_gate(cj, ff, layer.state_ff_gate, gate_kind))
    return torch.stack(new)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(gate="fixed"),
        dict(gate="lstm", recurrent_layers=[0, -1]),
        dict(gate="fixed", num_layers=3),  # default placement: index -3
    ],
    ids=["fixed", "lstm-two-recurrent", "three-layers"],
)
def test_brt_equals_reference(kwargs):
    cfg = dict(d_model=8, num_layers=2, num_heads=2, block_len=3, num_state=2, d_ff=12)
    cfg.update(kwargs)
    torch.manual_seed(0)
    core = make_core("brt", input_dim=D_IN, **cfg).double().eval()
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():  # non-zero relative biases, so that the distance indexing is checked
        for layer in core.layers:
            layer.rel_bias.copy_(
                torch.randn(layer.rel_bias.shape, generator=g, dtype=torch.float64)
            )
    x, first = inputs(2)
    with torch.no_grad():
        y, _ = core(x, None, first)
        for b in range(B):
            want = brt_reference(core, x[b], first[b], cfg["gate"])
            torch.testing.assert_close(y[b], want, atol=1e-10, rtol=0)


def test_brt_default_recurrent_layer_is_the_papers():
    assert make_core("brt", input_dim=D_IN, num_layers=12).recurrent_layers == (9,)  # layer 10
    assert make_core("brt", input_dim=D_IN, num_layers=4).recurrent_layers == (1,)
    assert make_core("brt", input_dim=D_IN, num_layers=2).recurrent_layers == (0,)
    assert make_core(
        "brt", input_dim=D_IN, num_layers=4, recurrent_layers=[-1]
    ).recurrent_layers == (3,)
    with pytest.raises(ValueError, match="recurrent_layers"):
        make_core("brt", input_dim=D_IN, num_layers=4, recurrent_layers=[-5])
