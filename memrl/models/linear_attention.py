"""Shared pieces of the recurrent linear transformers (Pramanik et al. 2023, arXiv 2310.15719).

ReLiT and AReLiT share the layer structure and the scan; each has its own attention module
(relit.py, arelit.py), following the authors' two code paths:

* ``linear_scan``: ``h_t = a_t * h_{t-1} + b_t`` over a sequence, as a log-depth (odd-even)
  parallel scan on CUDA and a step loop on the CPU (faster there), which both cores use in
  training. A decay of exactly 0 (an episode start) cuts the carried-in contribution exactly,
  so nothing leaks across an episode boundary.
* ``GatedFeatures``: AReLiT's learned outer-product feature map and its gates (the authors'
  ``AttentionORLiTLayer``: one fused projection per layer, orthogonal(sqrt 2) as one block). Per
  head, with
  ``x`` the (layer-normed) block input, ``d_h`` the head size and ``nu`` the feature expansion::

      k, q, v, b, g = W_{k,q,v,beta,gamma} x            # each [d_h]
      p1, p2, p3    = W_{p1,p2,p3} x                   # each [nu]
      phi(k) = flatten(relu(p1) (x) relu(k))           # [nu * d_h], >= 0
      phi(q) = flatten(relu(p2) (x) relu(q))           # [nu * d_h], >= 0
      gamma  = flatten(sigmoid(p3) (x) sigmoid(g))     # [nu * d_h], in (0, 1)
      beta   = sigmoid(b)                              # [d_h], in (0, 1)

  relu there is the authors' feature map (``feature_map="relu"``); memrl's default is elu+1
  (``"elu1"``, see :data:`FEATURE_MAPS`).

  It returns the gated key ``gamma * phi(k)``, gated value ``beta * v``, the decays
  ``1 - gamma`` / ``1 - beta`` and the query feature ``phi(q)``.
* ``GRUGate`` and ``GatedTransformerBlock``: the GTrXL block (Parisotto et al. 2020) the paper
  wraps its attention in: pre-LayerNorm, ReLU on each sublayer output, GRU-style gating in place
  of both residual connections, gate bias ``b_g = 2``.
* ``LinearTransformerCore``: input embedding ``Linear(input_dim, d_model)`` (followed by a ReLU
  where the subclass sets ``embedding_relu``, as the authors' AReLiT does and their ReLiT does
  not) then ``num_layers`` blocks; state fields are stacked over layers (``[B, layers, ...]``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from memrl.models.base import MemoryCore, State
from memrl.models.gating import GRUGate, orthogonal_

LayerState = dict[str, Tensor]


def _elu1(x: Tensor) -> Tensor:
    return F.elu(x) + 1.0


# The non-negative activation inside the outer-product feature maps phi(k), phi(q).
# "relu" is the authors'. Its flaw at small sizes: phi(k) = relu(k) (x) relu(p) is exactly 0
# when the nu entries of p are all negative (chance 2^-nu per head and step at initialisation),
# so that step is never written and gets no gradient to become so: in the learning suite's
# T-Maze (nu = 2) the cue step was dead in some heads from the start. "elu1" (elu(x) + 1, the
# feature map of Katharopoulos et al. 2020) is positive everywhere, so every step is written
# and every feature gets a gradient.
FEATURE_MAPS = {"relu": F.relu, "elu1": _elu1}


def feature_activation(name: str):
    """The activation called ``name`` in :data:`FEATURE_MAPS`; ValueError naming the options."""
    if name not in FEATURE_MAPS:
        raise ValueError(f"feature_map must be one of {tuple(FEATURE_MAPS)}, got {name!r}")
    return FEATURE_MAPS[name]


def write_gate_bias_value(value: object) -> float:
    """``value`` as a float; ValueError naming ``write_gate_bias`` when it is not a number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"write_gate_bias must be a number, got {value!r}")
    return float(value)


def _product(decays: Sequence[Tensor]) -> Tensor:
    out = decays[0]
    for a in decays[1:]:
        out = out * a
    return out


def _split_steps(x: Tensor, first: int) -> tuple[Tensor, Tensor]:
    """``x[:, :first], x[:, first:]`` as a split: its backward concatenates the two gradients,
    where a slice's backward fills a zero tensor of the full size (most of the scan's time on
    the CPU, when every level sliced this way)."""
    head, tail = x.split([first, x.shape[1] - first], dim=1)
    return head, tail


def _odd_even_scan(decays: Sequence[Tensor], updates: Tensor) -> Tensor:
    """Inclusive scan of ``h_t = a_t * h_{t-1} + b_t`` from ``h_{-1} = 0`` (odd-even reduction).

    Pairs ``(2i, 2i+1)`` are combined with ``(a1, b1) . (a2, b2) = (a1 a2, a2 b1 + b2)``, the
    half-length problem is solved recursively (giving every odd-index state), and each even-index
    state is one more step from its odd neighbour: O(T) work in ``2 log2 T`` rounds. The steps
    are split into pairs by reshaping and unbinding, never by strided slicing (see
    ``_split_steps``).
    """
    steps = updates.shape[1]
    if steps == 1:
        return updates
    half = steps // 2
    pairs_u, pairs_a = updates, list(decays)
    if steps % 2:  # the last step is added after the pairs
        pairs_u, last_u = _split_steps(updates, 2 * half)
        pairs_a, last_a = zip(*(_split_steps(a, 2 * half) for a in decays), strict=True)
    even_u, odd_u = pairs_u.unflatten(1, (half, 2)).unbind(2)
    even_a, odd_a = zip(*(a.unflatten(1, (half, 2)).unbind(2) for a in pairs_a), strict=True)
    pair_updates = _product(odd_a) * even_u + odd_u
    pair_decays = [a_odd * a_even for a_odd, a_even in zip(odd_a, even_a, strict=True)]
    h_odd = _odd_even_scan(pair_decays, pair_updates)  # states at t = 1, 3, 5, ...
    before, newest = _split_steps(h_odd, half - 1)
    # h_{2i} = a_{2i} h_{2i-1} + b_{2i}, with h_{-1} = 0 for i = 0.
    previous = torch.cat([h_odd.new_zeros(newest.shape), before], dim=1)
    h_even = _product(even_a) * previous + even_u
    out = torch.stack([h_even, h_odd], dim=2).flatten(1, 2)
    if steps % 2:
        last = _product(last_a) * newest + last_u
        out = torch.cat([out, last], dim=1)
    return out


SCAN_METHODS = ("auto", "sequential", "parallel")


class _LoopScan(torch.autograd.Function):
    """``h_t = a_t * h_{t-1} + b_t`` step by step, with a hand-written backward.

    ``forward(a [B, T, *S], b [B, T, *S], h0 [B, *S])``, all of one shape and dtype. Autograd
    over the plain loop keeps a node per step and stacks the steps; here each step writes its
    slice of one output, and the backward is the same recurrence run in reverse
    (``g_t = dL/dh_t + a_{t+1} g_{t+1}``) followed by one product for the decays' gradient
    (``dL/da_t = g_t h_{t-1}``). AReLiT's training forward + backward (d 128, 4 layers, 64
    sequences of 64 steps, 1 CPU thread) ran 1.09-1.17x faster with it, in one process.
    """

    @staticmethod
    def forward(ctx, decay: Tensor, updates: Tensor, initial: Tensor) -> Tensor:
        out = torch.empty_like(updates, memory_format=torch.contiguous_format)
        h = initial
        for t in range(updates.shape[1]):
            h = torch.addcmul(updates[:, t], decay[:, t], h, out=out[:, t])
        ctx.save_for_backward(decay, initial, out)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        decay, initial, out = ctx.saved_tensors
        last = out.shape[1] - 1
        grad_h = torch.empty_like(out)
        g = grad_h[:, last].copy_(grad_out[:, last])
        for t in range(last - 1, -1, -1):
            g = torch.addcmul(grad_out[:, t], decay[:, t + 1], g, out=grad_h[:, t])
        grad_decay = grad_initial = None
        if ctx.needs_input_grad[0]:
            grad_decay = torch.empty_like(out)
            torch.mul(grad_h[:, 0], initial, out=grad_decay[:, 0])
            torch.mul(grad_h[:, 1:], out[:, :-1], out=grad_decay[:, 1:])
        if ctx.needs_input_grad[2]:
            grad_initial = decay[:, 0] * grad_h[:, 0]
        return grad_decay, grad_h if ctx.needs_input_grad[1] else None, grad_initial


def _sequential_scan(decays: Sequence[Tensor], updates: Tensor, initial: Tensor) -> Tensor:
    """The recurrence one step at a time: T fused multiply-adds on [B, *S] slices.

    One decay factor runs ``_LoopScan`` on views broadcast to the output's shape (their
    gradients are summed back by autograd's expand). Several factors run autograd over the loop,
    their product taken per step so that a factored decay is never materialised over the
    sequence; the steps are taken by ``unbind`` (its backward is one stack), never by indexing
    ``[:, t]``, whose backward fills a zero tensor of the whole sequence for every step.
    """
    if len(decays) == 1:
        dtype = torch.promote_types(
            torch.promote_types(decays[0].dtype, updates.dtype), initial.dtype
        )
        batch, steps = updates.shape[:2]
        shape = torch.broadcast_shapes(
            updates.shape, decays[0].shape, (batch, steps, *initial.shape[1:])
        )
        return _LoopScan.apply(
            decays[0].to(dtype).expand(shape),
            updates.to(dtype).expand(shape),
            initial.to(dtype).expand(shape[:1] + shape[2:]),
        )
    factors = [a.unbind(1) for a in decays]
    h, out = initial, []
    for t, update in enumerate(updates.unbind(1)):
        h = torch.addcmul(update, _product([f[t] for f in factors]), h)
        out.append(h)
    return torch.stack(out, dim=1)


def linear_scan(
    decays: Sequence[Tensor], updates: Tensor, initial: Tensor, method: str = "auto"
) -> Tensor:
    """All states of ``h_t = (prod_f decays[f][:, t]) * h_{t-1} + updates[:, t]``, from ``initial``.

    Shapes: ``updates`` [B, T, *S]; ``initial`` [B, *S]; each ``decays[f]`` [B, T, *S'] with
    ``S'`` broadcastable to ``S`` (a factored decay, e.g. an outer product ``a (x) b`` passed as
    ``[..., d, 1]`` and ``[..., 1, e]``, is never materialised at full size over the sequence).
    Returns [B, T, *S] with ``h_t`` at index ``t``; dtype follows type promotion of the inputs.

    ``method``: ``"parallel"`` is a scan with the associative operator
    ``(a1, b1) . (a2, b2) = (a1 a2, a2 b1 + b2)`` (odd-even reduction: O(T) work, O(log T)
    depth); ``"sequential"`` the step loop (T fused multiply-adds); ``"auto"`` (default) the
    parallel scan on CUDA, where depth decides, and the loop elsewhere: on the CPU the loop's
    forward + backward ran 4.4x faster at [64, 64, 4, 256] (B, T, heads, AReLiT's features; 53
    ms against 234 ms on 1 thread). Neither divides, so float32 stays as accurate as the
    step-by-step loop, and a decay of exactly 0 removes everything before it exactly. For
    ``T == 1`` both are the single update, so a per-step call does O(1) work whatever came
    before.
    """
    if method not in SCAN_METHODS:
        raise ValueError(f"method must be one of {SCAN_METHODS}, got {method!r}")
    if method == "auto":
        method = "parallel" if updates.is_cuda else "sequential"
    if updates.shape[1] == 1:  # acting: one update, whatever the method
        return _product(decays) * initial.unsqueeze(1) + updates
    if method == "sequential":
        return _sequential_scan(decays, updates, initial)
    # Fold the carried-in state into the first update; then the scan starts from zero.
    first_u, rest_u = _split_steps(updates, 1)
    head = _product([_split_steps(a, 1)[0] for a in decays]) * initial.unsqueeze(1) + first_u
    return _odd_even_scan(decays, torch.cat([head, rest_u], dim=1))


class GatedFeatures(nn.Module):
    """Per-head projections, learned outer-product feature map and gates (see module docstring).

    ``forward(x [B, T, d_model])`` returns a dict of float tensors:
    ``query`` phi(q) [B, T, H, nu*d_h]; ``key`` gamma*phi(k) [B, T, H, nu*d_h]; ``value``
    beta*v [B, T, H, d_h]; ``key_decay`` 1-gamma [B, T, H, nu*d_h]; ``value_decay`` 1-beta
    [B, T, H, d_h].
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        d_head: int,
        nu: int,
        feature_map: str,
        write_gate_bias: float = 0.0,
    ) -> None:
        super().__init__()
        self.num_heads, self.d_head, self.nu = num_heads, d_head, nu
        self.act = feature_activation(feature_map)
        self.kqvbg = orthogonal_(nn.Linear(d_model, 5 * num_heads * d_head))
        self.p123 = orthogonal_(nn.Linear(d_model, 3 * num_heads * nu))
        # Initial bias of the beta and gamma logits (rows 3 and 4 of each head's k/q/v/b/g).
        # Negative: small writes and decays near 1, so the memory outlasts a step at init.
        with torch.no_grad():
            self.kqvbg.bias.view(num_heads, 5, d_head)[:, 3:].fill_(write_gate_bias)

    @property
    def feature_dim(self) -> int:
        return self.nu * self.d_head

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        batch, steps, _ = x.shape
        heads = self.kqvbg(x).view(batch, steps, self.num_heads, 5, self.d_head)
        k, q, v, b, g = heads.unbind(dim=3)  # each [B, T, H, d_h]
        p = self.p123(x).view(batch, steps, self.num_heads, 3, self.nu)
        p1, p2, p3 = p.unbind(dim=3)  # each [B, T, H, nu]

        def outer(left: Tensor, right: Tensor) -> Tensor:  # [.., nu] (x) [.., d_h] -> [.., nu*d_h]
            return (left.unsqueeze(-1) * right.unsqueeze(-2)).flatten(-2)

        gamma = outer(torch.sigmoid(p3), torch.sigmoid(g))
        beta = torch.sigmoid(b)
        return {
            "query": outer(self.act(p2), self.act(q)),
            "key": gamma * outer(self.act(p1), self.act(k)),
            "value": beta * v,
            "key_decay": 1.0 - gamma,
            "value_decay": 1.0 - beta,
        }


class GatedTransformerBlock(nn.Module):
    """One GTrXL-style layer around a recurrent attention module.

    u = LN(x); a = relu(attention(u)); x' = gate1(x, a); f = relu(FF(LN(x'))); out = gate2(x', f),
    with FF = Linear(d_model, d_ff) -> relu -> Linear(d_ff, d_model).
    """

    def __init__(self, d_model: int, d_ff: int, attention: nn.Module, gate_bias: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(d_model)
        self.attention = attention
        self.gate1 = GRUGate(d_model, gate_bias, orthogonal=True)
        self.norm2 = nn.LayerNorm(d_model)
        self.ff = nn.Sequential(
            orthogonal_(nn.Linear(d_model, d_ff)),
            nn.ReLU(),
            orthogonal_(nn.Linear(d_ff, d_model)),
        )
        self.gate2 = GRUGate(d_model, gate_bias, orthogonal=True)

    def forward(
        self, x: Tensor, keep: Tensor, state: LayerState, context: dict[str, Tensor]
    ) -> tuple[Tensor, LayerState]:
        attended, new_state = self.attention(self.norm1(x), keep, state, context)
        x = self.gate1(x, F.relu(attended))
        return self.gate2(x, F.relu(self.ff(self.norm2(x)))), new_state


class LinearTransformerCore(MemoryCore):
    """Base of ReLiT and AReLiT: embedding, stacked gated blocks, per-layer carry state.

    Subclasses set ``layer_fields`` (state fields stacked over layers, ``[B, layers, ...]``),
    implement ``_make_attention`` and ``state_spec``, and may override ``_context`` to compute
    per-step inputs shared by all layers (and extra, layer-free state fields).
    """

    layer_fields: ClassVar[tuple[str, ...]] = ()
    embedding_relu: ClassVar[bool] = True

    def __init__(
        self,
        input_dim: int,
        *,
        d_model: int,
        num_layers: int,
        num_heads: int,
        d_head: int,
        nu: int,
        d_ff: int,
        gate_bias: float,
        eps: float,
    ) -> None:
        super().__init__(input_dim)
        for field, value in dict(
            d_model=d_model,
            num_layers=num_layers,
            num_heads=num_heads,
            d_head=d_head,
            nu=nu,
            d_ff=d_ff,
        ).items():
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{field} must be a positive int, got {value!r}")
        if not (isinstance(eps, (int, float)) and eps > 0):
            raise ValueError(f"eps must be a positive float, got {eps!r}")
        self.d_model, self.num_layers, self.num_heads = d_model, num_layers, num_heads
        self.d_head, self.nu, self.d_ff = d_head, nu, d_ff
        self.eps = float(eps)
        self.embed = orthogonal_(nn.Linear(input_dim, d_model))
        self.blocks = nn.ModuleList(
            GatedTransformerBlock(d_model, d_ff, self._make_attention(), gate_bias)
            for _ in range(num_layers)
        )
        self.output_dim = d_model

    def _make_attention(self) -> nn.Module:
        raise NotImplementedError

    def _context(self, state: State, keep: Tensor) -> tuple[dict[str, Tensor], State]:
        """Per-step inputs shared by every layer, and the new values of layer-free fields."""
        return {}, {}

    def _forward(self, x: Tensor, state: State, first: Tensor) -> tuple[Tensor, State]:
        # keep[b, t] = 0 where an episode starts: it multiplies every decay at that step, which
        # zeroes the carried-in state exactly (in the scan and in the single step alike).
        keep = (~first).to(self.state_dtype)
        context, new_state = self._context(state, keep)
        h = self.embed(x)
        if self.embedding_relu:
            h = F.relu(h)
        per_layer: dict[str, list[Tensor]] = {k: [] for k in self.layer_fields}
        for i, block in enumerate(self.blocks):
            layer_state = {k: state[k][:, i] for k in self.layer_fields}
            h, layer_new = block(h, keep, layer_state, context)
            for k in self.layer_fields:
                per_layer[k].append(layer_new[k].to(self.state_dtype))
        new_state.update({k: torch.stack(v, dim=1) for k, v in per_layer.items()})
        return h, new_state
