"""AReLiT: the approximate Recurrent Linear Transformer (Pramanik et al. 2023, arXiv 2310.15719).

ReLiT's matrix memory ``C_t = sum_i D_{i..t} * v'_i k'_i^T`` (decays ``D`` the outer products
``(1 - beta)(1 - gamma)^T``) costs ``d_h * nu*d_h`` per head. AReLiT keeps instead ``r`` pairs of
cosine-modulated vectors, with ``n`` the step's index within its episode (1 at its first step)
and ``omega = linspace(-pi, pi, r)``::

    kt^j_n = (1 - gamma_n) * kt^j_{n-1} + cos(omega_j n) k'_n        # [nu*d_h], j = 1..r
    vt^j_n = (1 - beta_n)  * vt^j_{n-1} + cos(omega_j n) v'_n        # [d_h]
    s_n    = (1 - gamma_n) * s_{n-1} + k'_n                          # [nu*d_h]
    a_n    = sum_j vt^j_n (kt^j_n . phi(q_n)) / (2 r (s_n . phi(q_n)) + eps)

``sum_j vt^j kt^j^T`` sums ``cos(omega_j m) cos(omega_j l) v'_m k'_l^T`` over pairs of steps:
the cosines weight the diagonal ``m = l`` terms (ReLiT's memory) over the cross terms, and the
memory no longer holds any ``d_h x nu*d_h`` matrix. The state per head is
``r * nu*d_h + r * d_h + nu*d_h``: linear in ``nu * d_h`` where ReLiT's is ``d_h * nu * d_h``.

The step index ``n`` is part of the state (field ``tick``). Because ``cos(omega_j n)`` has period
``2 (r - 1)`` in ``n`` for these frequencies, the state keeps ``n`` modulo that period: a small
integer, exact in any float dtype (bf16 replay included), that never grows with the episode.

Training runs the log-depth parallel scan over the sequence; one step (``T == 1``) is a single
update of fixed-size vectors, whatever the episode's length so far.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from memrl.models.base import State, StateSpec
from memrl.models.gating import orthogonal_
from memrl.models.linear_attention import (
    GatedFeatures,
    LayerState,
    LinearTransformerCore,
    linear_scan,
)


class AReLiTAttention(nn.Module):
    """Multi-head AReLiT attention; ``context["cosines"]`` [B, T, r] holds ``cos(omega_j n)``.

    State ``{"keys": [B, H, r, nu*d_h], "values": [B, H, r, d_h], "s": [B, H, nu*d_h]}``;
    ``forward(u [B, T, d_model], keep [B, T], state, context)`` returns
    ([B, T, d_model], new state).
    """

    def __init__(
        self, d_model: int, num_heads: int, d_head: int, nu: int, r: int, eps: float
    ) -> None:
        super().__init__()
        self.features = GatedFeatures(d_model, num_heads, d_head, nu)
        self.project = orthogonal_(nn.Linear(num_heads * d_head, d_model))
        self.r, self.eps = r, eps

    def forward(
        self, u: Tensor, keep: Tensor, state: LayerState, context: dict[str, Tensor]
    ) -> tuple[Tensor, LayerState]:
        f = self.features(u)
        dtype = state["s"].dtype
        keep = keep[:, :, None, None]  # [B, T, 1, 1]
        key_decay = (f["key_decay"] * keep).to(dtype)  # [B, T, H, F]
        value_decay = (f["value_decay"] * keep).to(dtype)  # [B, T, H, D]
        key, value = f["key"].to(dtype), f["value"].to(dtype)
        cosines = context["cosines"].to(dtype)[:, :, None, :, None]  # [B, T, 1, r, 1]
        keys = linear_scan(
            [key_decay.unsqueeze(3)], key.unsqueeze(3) * cosines, state["keys"]
        )  # [B, T, H, r, F]
        values = linear_scan(
            [value_decay.unsqueeze(3)], value.unsqueeze(3) * cosines, state["values"]
        )  # [B, T, H, r, D]
        normaliser = linear_scan([key_decay], key, state["s"])  # [B, T, H, F]
        query = f["query"]
        scores = torch.einsum("bthrf,bthf->bthr", keys.to(query.dtype), query)
        numerator = torch.einsum("bthrd,bthr->bthd", values.to(query.dtype), scores)
        denominator = torch.einsum("bthf,bthf->bth", normaliser.to(query.dtype), query)
        attended = numerator / (2 * self.r * denominator.unsqueeze(-1) + self.eps)
        out = self.project(attended.flatten(2))
        new = {"keys": keys[:, -1], "values": values[:, -1], "s": normaliser[:, -1]}
        return out, new


class AReLiTCore(LinearTransformerCore):
    """AReLiT memory core (carry state, size independent of ``d_h * nu * d_h``).

    State: ``keys`` [layers, H, r, nu*d_h], ``values`` [layers, H, r, d_h], ``s``
    [layers, H, nu*d_h] and ``tick`` [1] (step index in the episode, modulo the cosines' period).

    Defaults are the authors' Memory Gym (Mystery Path) AReLiT settings (agalite repo,
    config/mysterypath/arelit4.yaml, the "AReLiT (eta=4)" run of its README; the T-Maze configs
    share all but ``eta``): ``num_layers=4``, ``d_model=128``, ``d_head=64``, ``num_heads=4``,
    ``d_ff=128``, feature expansion ``nu=4`` (the authors' ``eta``) and ``r=2`` cosine
    components. ``gate_bias=2`` is GTrXL's ``b_g``; ``eps=1e-5`` the authors' normaliser guard.
    The frequencies ``omega = linspace(-pi, pi, r)`` and the ``2 r`` normaliser follow the
    authors' code (note: cos is even, so ``+omega`` and ``-omega`` give equal components).

    Raises ValueError for a non-positive size, ``r`` or ``eps``.
    """

    name = "arelit"
    layer_fields = ("keys", "values", "s")

    def __init__(
        self,
        input_dim: int,
        *,
        d_model: int = 128,
        num_layers: int = 4,
        num_heads: int = 4,
        d_head: int = 64,
        nu: int = 4,
        r: int = 2,
        d_ff: int = 128,
        gate_bias: float = 2.0,
        eps: float = 1e-5,
    ) -> None:
        if isinstance(r, bool) or not isinstance(r, int) or r <= 0:
            raise ValueError(f"r must be a positive int, got {r!r}")
        self.r = r
        super().__init__(
            input_dim,
            d_model=d_model,
            num_layers=num_layers,
            num_heads=num_heads,
            d_head=d_head,
            nu=nu,
            d_ff=d_ff,
            gate_bias=gate_bias,
            eps=eps,
        )
        omegas = torch.linspace(-math.pi, math.pi, r, dtype=torch.float64)
        # cos(omega_j n) for omega_j / pi = -1 + 2j/(r-1) repeats every 2(r-1) steps (every 2
        # steps for r = 1, where omega = -pi).
        self.period = 2 * max(r - 1, 1)
        phases = torch.cos(
            omegas[None, :] * torch.arange(self.period, dtype=torch.float64)[:, None]
        )
        # Exact table of cos(omega_j n) for n mod period: a buffer, so it follows .to(dtype).
        self.register_buffer("cos_table", phases.to(torch.get_default_dtype()), persistent=False)

    def _make_attention(self) -> nn.Module:
        return AReLiTAttention(self.d_model, self.num_heads, self.d_head, self.nu, self.r, self.eps)

    def state_spec(self) -> dict[str, StateSpec]:
        layers, heads, features = self.num_layers, self.num_heads, self.nu * self.d_head
        dtype = self.state_dtype
        return {
            "keys": StateSpec("carry", (layers, heads, self.r, features), dtype),
            "values": StateSpec("carry", (layers, heads, self.r, self.d_head), dtype),
            "s": StateSpec("carry", (layers, heads, features), dtype),
            "tick": StateSpec("carry", (1,), dtype),
        }

    def _context(self, state: State, keep: Tensor) -> tuple[dict[str, Tensor], State]:
        # Step index n within the episode: n_t = keep_t * n_{t-1} + 1 (the same scan; integers,
        # so exact), taken modulo the period to index the cosine table.
        tick = state["tick"].to(keep.dtype)  # [B, 1]
        ones = torch.ones_like(keep)
        index = linear_scan([keep], ones, tick.squeeze(-1))  # [B, T]
        index = torch.remainder(torch.round(index), self.period)
        cosines = self.cos_table.to(keep.dtype)[index.long()]  # [B, T, r]
        return {"cosines": cosines}, {"tick": index[:, -1:].to(self.state_dtype)}
