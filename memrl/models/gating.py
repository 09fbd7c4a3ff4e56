"""GTrXL's GRU-type gate (Parisotto et al. 2020, Eq. 8-11), shared by every gated core."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def orthogonal_(linear: nn.Linear, gain: float = math.sqrt(2.0)) -> nn.Linear:
    """Orthogonal weights with ``gain``, zero bias (the ReLiT authors' initialisation)."""
    nn.init.orthogonal_(linear.weight, gain=gain)
    if linear.bias is not None:
        nn.init.zeros_(linear.bias)
    return linear


def orthogonal_blocks_(weight: Tensor, rows: int, gain: float = math.sqrt(2.0)) -> Tensor:
    """Initialise each consecutive ``rows``-row block of ``weight`` [N*rows, in] separately
    orthogonal with ``gain``: a fused matrix then starts as the authors' separate ones would."""
    if weight.shape[0] % rows:
        raise ValueError(f"weight has {weight.shape[0]} rows, not a multiple of {rows}")
    with torch.no_grad():
        for start in range(0, weight.shape[0], rows):
            nn.init.orthogonal_(weight[start : start + rows], gain=gain)
    return weight


class GRUGate(nn.Module):
    """``g(x, y)`` in place of the residual ``x + y`` (x: residual stream, y: sublayer output).

    ``r = s(W_r y + U_r x)``, ``z = s(W_z y + U_z x - b_g)``, ``h = tanh(W_g y + U_g (r * x))``,
    ``g = (1 - z) * x + z * h``. A positive ``b_g`` (``gate_bias``, 2 in GTrXL and the ReLiT code)
    closes the update gate z, so at initialisation the block is close to the identity map.
    ``orthogonal=True`` initialises the projections as the ReLiT authors do (each of the six
    matrices separately orthogonal with gain sqrt(2), although three and two of them are stored
    fused); otherwise PyTorch's default Linear initialisation.
    """

    def __init__(self, d_model: int, gate_bias: float, *, orthogonal: bool = False) -> None:
        super().__init__()
        self.from_output = nn.Linear(d_model, 3 * d_model, bias=False)  # W_r, W_z, W_g
        self.from_stream = nn.Linear(d_model, 2 * d_model, bias=False)  # U_r, U_z
        self.candidate = nn.Linear(d_model, d_model, bias=False)  # U_g
        if orthogonal:
            for linear in (self.from_output, self.from_stream, self.candidate):
                orthogonal_blocks_(linear.weight, d_model)
        self.gate_bias = nn.Parameter(torch.full((d_model,), float(gate_bias)))  # b_g

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """x, y [..., d] -> [..., d]."""
        wr, wz, wg = self.from_output(y).chunk(3, dim=-1)
        ur, uz = self.from_stream(x).chunk(2, dim=-1)
        reset = torch.sigmoid(wr + ur)
        update = torch.sigmoid(wz + uz - self.gate_bias)
        candidate = torch.tanh(wg + self.candidate(reset * x))
        return (1 - update) * x + update * candidate
