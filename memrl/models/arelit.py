"""AReLiT: the approximate Recurrent Linear Transformer (Pramanik et al. 2023, arXiv 2310.15719).

ReLiT's matrix memory ``C_t = sum_i D_{i..t} * v'_i k'_i^T`` costs ``d_h * nu*d_h`` per head.
AReLiT (the authors' ``AttentionORLiTLayer``, subho406/agalite at cd10e66) keeps instead ``r``
pairs of cosine-modulated vectors, with ``n`` the step's index and frequencies ``omega_j``::

    kt^j_n = (1 - gamma_n) * kt^j_{n-1} + cos(omega_j n) k'_n        # [nu*d_h], j = 1..r
    vt^j_n = (1 - beta_n)  * vt^j_{n-1} + cos(omega_j n) v'_n        # [d_h]
    s_n    = (1 - gamma_n) * s_{n-1} + k'_n                          # [nu*d_h]
    a_n    = sum_j vt^j_n (kt^j_n . phi(q_n)) / (2 r (s_n . phi(q_n)) + eps)

``sum_j vt^j kt^j^T`` sums ``(sum_j cos(omega_j m) cos(omega_j l)) v'_m k'_l^T`` over pairs of
steps. How well that weights the diagonal ``m = l`` (ReLiT's memory) over the cross terms
depends on the frequencies (``omegas``):

* ``"authors"`` (default): ``omega = linspace(-pi, pi, r)``, as the authors' code. cos is even,
  so ``+omega`` and ``-omega`` give identical components: for the authors' ``r = 2`` both are
  ``cos(pi n) = (-1)^n``, and the memory is one rank-1 term whose cross terms get weight
  ``+-1`` (``+1`` for an even distance, ``-1`` for an odd one): the diagonal is *not* favoured.
* ``"uniform"``: ``omega_j = pi j / r`` for ``j = 0 .. r-1``, ``r`` distinct components (the
  cosine sum is ``r/2`` on the diagonal and small off it for distances below ``2r``, up to the
  ``j = 0`` term); offered so the learning suite can compare.

Only the distinct components are stored (each with its multiplicity in the sum), so the authors'
``r = 2`` keeps one pair of vectors and gives exactly the output of keeping both. The state per
head is ``r' * nu*d_h + r' * d_h + nu*d_h`` with ``r'`` the number of distinct components:
linear in ``nu * d_h`` where ReLiT's is ``d_h * nu * d_h``.

The step index ``n`` is part of the state (field ``tick``), restarted at every episode (``n = 1``
at its first step), so an episode's outputs never depend on what came before it. (The authors'
tick starts at 2 and runs on across episodes; for ``omegas="authors"`` with ``r <= 3`` every
frequency is 0 or +-pi, a shift of ``n`` multiplies every component by the same sign, and the
output is identical.) ``cos(omega_j n)`` is periodic in ``n`` (period ``2 (r - 1)`` for
"authors", ``2 r`` for "uniform"), so the state keeps ``n`` modulo the period: a small integer,
exact in any float dtype (bf16 replay included), that never grows with the episode.

Training runs ``linear_scan`` over the sequence (a step loop on the CPU, the log-depth parallel
scan on CUDA); one step (``T == 1``) is a single update of fixed-size vectors, whatever the
episode's length so far.
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
    feature_activation,
    linear_scan,
    write_gate_bias_value,
)

OMEGAS = ("authors", "uniform")


def frequencies(scheme: str, r: int) -> tuple[Tensor, int]:
    """``(omega [r] float64, period)`` for ``scheme``; ``cos(omega n)`` repeats every period."""
    if scheme == "authors":
        # omega_j / pi = -1 + 2j/(r-1): period 2(r-1) (2 for r = 1, where omega = -pi).
        return torch.linspace(-math.pi, math.pi, r, dtype=torch.float64), 2 * max(r - 1, 1)
    if scheme == "uniform":
        return math.pi * torch.arange(r, dtype=torch.float64) / r, 2 * r
    raise ValueError(f"omegas must be one of {OMEGAS}, got {scheme!r}")


class AReLiTAttention(nn.Module):
    """Multi-head AReLiT attention over the ``r'`` distinct cosine components.

    ``context["cosines"]`` [B, T, r'] holds ``cos(omega_j n)``; ``multiplicity`` [r'] how often
    each appears among the ``r`` nominal components.
    State ``{"keys": [B, H, r', nu*d_h], "values": [B, H, r', d_h], "s": [B, H, nu*d_h]}``;
    ``forward(u [B, T, d_model], keep [B, T], state, context)`` returns
    ([B, T, d_model], new state).
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        d_head: int,
        nu: int,
        r: int,
        eps: float,
        multiplicity: Tensor,
        feature_map: str,
        write_gate_bias: float = 0.0,
    ) -> None:
        super().__init__()
        self.features = GatedFeatures(d_model, num_heads, d_head, nu, feature_map, write_gate_bias)
        self.project = orthogonal_(nn.Linear(num_heads * d_head, d_model))
        self.r, self.eps = r, eps
        self.register_buffer("multiplicity", multiplicity, persistent=False)

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
        # Products and sums, not einsum: with r' (1 for the authors' r = 2) components, einsum's
        # batched matmuls of [r', F] x [F, 1] ran 2.5x slower on the CPU, backward included.
        scores = (keys.to(query.dtype) * query.unsqueeze(3)).sum(-1)  # [B, T, H, r']
        scores = scores * self.multiplicity.to(scores.dtype)
        numerator = (values.to(query.dtype) * scores.unsqueeze(-1)).sum(3)  # [B, T, H, D]
        denominator = (normaliser.to(query.dtype) * query).sum(-1)  # [B, T, H]
        attended = numerator / (2 * self.r * denominator.unsqueeze(-1) + self.eps)
        out = self.project(attended.flatten(2))
        new = {"keys": keys[:, -1], "values": values[:, -1], "s": normaliser[:, -1]}
        return out, new


class AReLiTCore(LinearTransformerCore):
    """AReLiT memory core (carry state, size independent of ``d_h * nu * d_h``).

    State: ``keys`` [layers, H, r', nu*d_h], ``values`` [layers, H, r', d_h], ``s``
    [layers, H, nu*d_h] and ``tick`` [1] (step index in the episode, modulo the cosines' period),
    with ``r'`` (``num_components``) the number of distinct cosine components.

    Defaults are the authors' Memory Gym (Mystery Path) AReLiT settings (agalite repo,
    config/mysterypath/arelit4.yaml, the "AReLiT (eta=4)" run of its README; the T-Maze configs
    share all but ``eta``): ``num_layers=4``, ``d_model=128``, ``d_head=64``, ``num_heads=4``,
    ``d_ff=128``, feature expansion ``nu=4`` (the authors' ``eta``) and ``r=2`` cosine
    components with ``omegas="authors"`` (``linspace(-pi, pi, r)``: for r = 2 a single, sign-
    alternating component, see the module docstring; ``"uniform"`` gives r distinct ones).
    ``gate_bias=0`` is GTrXL's ``b_g`` (2 in GTrXL and the authors' code; 0 here for the reason
    given at ``ReLiTCore``); ``eps=1e-5`` the authors' normaliser guard; the ``2 r``
    normaliser is the authors' for every scheme. The embedding is ``relu(Linear)`` as the
    authors' (``embedding_relu=False`` for a plain Linear, as ReLiT and GTrXL have) and the
    fused k/q/v/beta/gamma projection is orthogonal(sqrt 2) as one block, as the authors'.
    A second default differs from theirs: ``feature_map="elu1"`` puts elu+1 where their feature map
    has relu (``feature_map="relu"``), for the reason given in ``linear_attention.FEATURE_MAPS``
    (at init the T-Maze cue's key was exactly zero for 3 of 8 seeds of the quick suite's
    AReLiT with relu; ReLiT's seeds learned 6 of 6 with elu1 against 1 of 3 with relu).
    ``write_gate_bias`` is the initial bias of the beta and gamma logits (the authors': 0, so
    beta ~ 0.5 and the value memory halves every step at init). A negative one (the learning
    tests use -4) starts with a memory that lasts: what learning a horizon longer than the
    training sequence needs, since no gradient reaches back across the chunk's start.

    Raises ValueError for a non-positive size, ``r`` or ``eps``, an unknown ``omegas`` or
    ``feature_map``, or a ``write_gate_bias`` that is not a number.
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
        gate_bias: float = 0.0,
        eps: float = 1e-5,
        omegas: str = "authors",
        embedding_relu: bool = True,
        feature_map: str = "elu1",
        write_gate_bias: float = 0.0,
    ) -> None:
        self.write_gate_bias = write_gate_bias_value(write_gate_bias)
        if not isinstance(embedding_relu, bool):
            raise ValueError(f"embedding_relu must be True or False, got {embedding_relu!r}")
        feature_activation(feature_map)  # validate before building
        self.embedding_relu, self.feature_map = embedding_relu, feature_map
        if isinstance(r, bool) or not isinstance(r, int) or r <= 0:
            raise ValueError(f"r must be a positive int, got {r!r}")
        omega, self.period = frequencies(omegas, r)
        self.r, self.omegas = r, omegas
        phases = torch.cos(omega[None, :] * torch.arange(self.period, dtype=torch.float64)[:, None])
        # Components equal at every n (cos is even) are stored once. distinct: the first of each
        # group; component_of[j]: which stored component nominal component j is.
        keys = [tuple(torch.round(phases[:, j] * 1e9).tolist()) for j in range(r)]
        first_of: dict[tuple, int] = {}
        for key in keys:
            first_of.setdefault(key, len(first_of))
        self.component_of = [first_of[key] for key in keys]
        self.distinct = [keys.index(key) for key in first_of]
        self.num_components = len(self.distinct)
        multiplicity = torch.bincount(torch.tensor(self.component_of), minlength=len(first_of))
        self._multiplicity = multiplicity.to(torch.get_default_dtype())
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
        # Table of cos(omega_j n) for n mod period, distinct components only: a buffer, so it
        # follows .to(dtype).
        table = phases[:, self.distinct].to(torch.get_default_dtype())
        self.register_buffer("cos_table", table, persistent=False)

    def expand_components(self, stored: Tensor, dim: int = 2) -> Tensor:
        """The ``r`` nominal components from the ``r'`` stored ones along ``dim``."""
        index = torch.tensor(self.component_of, device=stored.device)
        return stored.index_select(dim, index)

    def _make_attention(self) -> nn.Module:
        return AReLiTAttention(
            self.d_model,
            self.num_heads,
            self.d_head,
            self.nu,
            self.r,
            self.eps,
            self._multiplicity.clone(),
            self.feature_map,
            self.write_gate_bias,
        )

    def state_spec(self) -> dict[str, StateSpec]:
        layers, heads, features = self.num_layers, self.num_heads, self.nu * self.d_head
        dtype = self.state_dtype
        return {
            "keys": StateSpec("carry", (layers, heads, self.num_components, features), dtype),
            "values": StateSpec("carry", (layers, heads, self.num_components, self.d_head), dtype),
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
        cosines = self.cos_table.to(keep.dtype)[index.long()]  # [B, T, r']
        return {"cosines": cosines}, {"tick": index[:, -1:].to(self.state_dtype)}
