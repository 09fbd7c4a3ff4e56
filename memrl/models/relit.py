"""ReLiT: the Recurrent Linear Transformer (Pramanik et al. 2023, arXiv 2310.15719, Sec. 3).

Per layer and head, with the features of ``linear_attention.GatedFeatures`` (phi(q), gated key
``k' = gamma * phi(k)``, gated value ``v' = beta * v``), the self-attention is a gated linear
recurrence over the matrix ``C`` [d_h, nu*d_h] and the normaliser ``s`` [nu*d_h]::

    C_t = ((1 - beta_t) (1 - gamma_t)^T) * C_{t-1} + v'_t k'_t^T
    s_t = (1 - gamma_t) * s_{t-1} + k'_t
    a_t = C_t phi(q_t) / (s_t . phi(q_t) + eps)

Both ``phi(q)`` and ``s`` are non-negative, so the denominator is at least ``eps``. The heads'
``a_t`` are concatenated and projected back to ``d_model``; the layer sits in a GTrXL block.
The state grows as ``layers * heads * d_h * nu * d_h``: AReLiT (arelit.py) removes the
``d_h * nu * d_h`` term.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from memrl.models.base import StateSpec
from memrl.models.gating import orthogonal_
from memrl.models.linear_attention import (
    GatedFeatures,
    LayerState,
    LinearTransformerCore,
    linear_scan,
)


class ReLiTAttention(nn.Module):
    """Multi-head gated linear attention with the full matrix memory ``(C, s)`` per head.

    ``forward(u [B, T, d_model], keep [B, T], state, context)`` with state
    ``{"C": [B, H, d_h, nu*d_h], "s": [B, H, nu*d_h]}`` returns ([B, T, d_model], new state).
    """

    def __init__(self, d_model: int, num_heads: int, d_head: int, nu: int, eps: float) -> None:
        super().__init__()
        self.features = GatedFeatures(d_model, num_heads, d_head, nu)
        self.project = orthogonal_(nn.Linear(num_heads * d_head, d_model))
        self.eps = eps

    def forward(
        self, u: Tensor, keep: Tensor, state: LayerState, context: dict[str, Tensor]
    ) -> tuple[Tensor, LayerState]:
        f = self.features(u)
        dtype = state["C"].dtype
        keep = keep[:, :, None, None]  # [B, T, 1, 1]
        key_decay = (f["key_decay"] * keep).to(dtype)  # [B, T, H, F]
        value_decay = f["value_decay"].to(dtype)  # [B, T, H, D]
        key, value = f["key"].to(dtype), f["value"].to(dtype)
        # The decay of C is the outer product (1 - beta)(1 - gamma)^T: passed as two factors.
        memory = linear_scan(
            [value_decay.unsqueeze(-1), key_decay.unsqueeze(-2)],
            value.unsqueeze(-1) * key.unsqueeze(-2),
            state["C"],
        )  # [B, T, H, D, F]
        normaliser = linear_scan([key_decay], key, state["s"])  # [B, T, H, F]
        query = f["query"]
        numerator = torch.einsum("bthdf,bthf->bthd", memory.to(query.dtype), query)
        denominator = torch.einsum("bthf,bthf->bth", normaliser.to(query.dtype), query)
        attended = numerator / (denominator.unsqueeze(-1) + self.eps)  # [B, T, H, D]
        out = self.project(attended.flatten(2))
        return out, {"C": memory[:, -1], "s": normaliser[:, -1]}


class ReLiTCore(LinearTransformerCore):
    """ReLiT memory core; state ``{"C": [layers, H, d_h, nu*d_h], "s": [layers, H, nu*d_h]}``.

    Defaults are the authors' T-Maze ReLiT settings (agalite repo, config/tmaze/relit.yaml,
    shared by their T-Maze/Memory Gym AReLiT configs): ``num_layers=4``, ``d_model=128``,
    ``d_head=64``, ``num_heads=4``, ``d_ff=128`` (their ``d_ffc``) and feature expansion ``nu=2``
    (kernel ``pp_relu``, ``nu: 2``). ``gate_bias=2`` is GTrXL's gate bias ``b_g`` as in the
    authors' ``GRUGatingUnit``. ``eps=1e-5`` is the normaliser guard of the authors' AReLiT
    layer (their ReLiT used 1e-10; 1e-5 keeps float32 and bf16 away from a ~0 denominator).

    Raises ValueError for a non-positive size or ``eps``.
    """

    name = "relit"
    layer_fields = ("C", "s")

    def __init__(
        self,
        input_dim: int,
        *,
        d_model: int = 128,
        num_layers: int = 4,
        num_heads: int = 4,
        d_head: int = 64,
        nu: int = 2,
        d_ff: int = 128,
        gate_bias: float = 2.0,
        eps: float = 1e-5,
    ) -> None:
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

    def _make_attention(self) -> nn.Module:
        return ReLiTAttention(self.d_model, self.num_heads, self.d_head, self.nu, self.eps)

    def state_spec(self) -> dict[str, StateSpec]:
        layers, heads, d_head, features = (
            self.num_layers,
            self.num_heads,
            self.d_head,
            self.nu * self.d_head,
        )
        return {
            "C": StateSpec("carry", (layers, heads, d_head, features), self.state_dtype),
            "s": StateSpec("carry", (layers, heads, features), self.state_dtype),
        }
