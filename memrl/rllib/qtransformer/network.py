"""The Q-Transformer network: encoder + any memory core over time, a causal head over dims.

    h_t = core(encoder(o_1..o_t))                    (reset where ``first``)
    Q^i(h_t, b^{<i}, .) = head_i([h_t, e_1(b^1), ..., e_{i-1}(b^{i-1})])   in R^B,  i = 1..d

Each dimension's head is its own MLP over ``h_t`` and the embeddings of the bins chosen in the
dimensions before it, so ``Q^i`` cannot see dimension ``i`` or later (causal by construction)
and ``Q^1`` reads ``h_t`` alone. With ``dueling`` each head outputs ``V^i + A^i - mean_b A^i``.
Values are plain numbers in reward units (no squashing), so targets, the Monte-Carlo bound and
the conservative push to ``r_min`` all act in value space. The heads' last layers output
``Q / value_scale``: with returns in the hundreds (Pendulum's R_min ~ -800) a unit-sized
initialisation and Adam's ~lr-sized steps would otherwise need tens of thousands of updates
only to reach the values' scale (the loss divides its errors by the same scale).

Training (teacher forcing with the dataset's bins) and greedy decoding call the same
:meth:`CausalDimensionHead.dimension`, so decoding scores bins exactly as training does.
The behaviour policy's stored recurrent states are never used: sequences start from the core's
initial state (at an episode start, or after a burn-in).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import torch
from torch import Tensor, nn

from memrl.config import NetworkConfig, QTransformerHyperparameters
from memrl.models import check_core_name, make_core
from memrl.rllib.encoders import build_encoder, mlp


class CausalDimensionHead(nn.Module):
    """``d`` per-dimension Q heads over ``B`` bins; head ``i`` reads ``h`` and bins ``< i``."""

    def __init__(
        self,
        in_dim: int,
        num_dims: int,
        num_bins: int,
        embedding_dim: int,
        hiddens: tuple[int, ...],
        act: str,
        dueling: bool,
        value_scale: float = 1.0,
    ) -> None:
        super().__init__()
        self.num_dims, self.num_bins, self.dueling = num_dims, num_bins, dueling
        self.value_scale = float(value_scale)
        # e_j embeds the bin chosen in dimension j; the last dimension's is never read.
        self.embeddings = nn.ModuleList(
            nn.Embedding(num_bins, embedding_dim) for _ in range(num_dims - 1)
        )
        self.trunks = nn.ModuleList()
        self.advantages = nn.ModuleList()
        self.values = nn.ModuleList()
        for i in range(num_dims):
            trunk, width = mlp(in_dim + i * embedding_dim, hiddens, act)
            self.trunks.append(trunk)
            self.advantages.append(nn.Linear(width, num_bins))
            if dueling:
                self.values.append(nn.Linear(width, 1))

    def dimension(self, i: int, h: Tensor, prefix: list[Tensor]) -> Tensor:
        """``Q^{i+1}`` (0-based ``i``) ``[*lead, B]`` from ``h`` ``[*lead, H]`` and the
        embeddings ``prefix`` of the bins of dimensions ``0..i-1`` (each ``[*lead, E]``)."""
        z = self.trunks[i](torch.cat([h, *prefix[:i]], dim=-1))
        adv = self.advantages[i](z)
        if self.dueling:
            adv = self.values[i](z) + adv - adv.mean(dim=-1, keepdim=True)
        return adv * self.value_scale if self.value_scale != 1.0 else adv

    def forward(self, h: Tensor, bins: Tensor) -> Tensor:
        """Teacher forcing: ``h`` ``[*lead, H]``, bins ``[*lead, d]`` long -> ``[*lead, d, B]``,
        entry ``i`` being ``Q^{i+1}(h, bins[..., :i], .)``."""
        prefix = [self.embeddings[j](bins[..., j]) for j in range(self.num_dims - 1)]
        return torch.stack([self.dimension(i, h, prefix) for i in range(self.num_dims)], dim=-2)

    def greedy(self, h: Tensor) -> tuple[Tensor, Tensor]:
        """Decode dimension by dimension: ``b^i = argmax_b Q^i(h, b^{<i}, b)``.

        Returns (bins ``[*lead, d]`` long, the scores used ``[*lead, d, B]``)."""
        prefix: list[Tensor] = []
        chosen, scores = [], []
        for i in range(self.num_dims):
            q = self.dimension(i, h, prefix)
            b = q.argmax(dim=-1)
            chosen.append(b)
            scores.append(q)
            if i < self.num_dims - 1:
                prefix.append(self.embeddings[i](b))
        return torch.stack(chosen, dim=-1), torch.stack(scores, dim=-2)


class QTransformerNetwork(nn.Module):
    """Encoder + core + :class:`CausalDimensionHead` for ``num_dims`` x ``num_bins`` actions.

    ``core`` is any name of ``memrl.models.CORES`` or ``"mlp"`` (memoryless); ``model`` gives the
    encoder sizes and activation. Raises ValueError for an unknown core or core keyword.
    """

    def __init__(
        self,
        obs_space: gym.Space,
        num_dims: int,
        num_bins: int,
        core: str,
        core_kwargs: dict[str, Any],
        model: NetworkConfig,
        hp: QTransformerHyperparameters,
    ) -> None:
        super().__init__()
        check_core_name(core)
        self.encoder = build_encoder(obs_space, model)
        self.core = make_core(core, self.encoder.out_dim, **core_kwargs)
        self.stateful = bool(self.core.state_spec())
        self.head = CausalDimensionHead(
            self.core.output_dim,
            num_dims,
            num_bins,
            hp.bin_embedding_dim,
            tuple(hp.head_hiddens),
            model.activation,
            hp.dueling,
            hp.value_scale,
        )

    def initial_state(self, batch_size: int, device: Any = None) -> dict[str, Tensor]:
        return self.core.initial_state(batch_size, device)

    def histories(
        self, obs: Any, first: Tensor, state: dict[str, Tensor] | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """obs ``[B, T, *obs_shape]``, first ``[B, T]`` bool, state (None: initial) ->
        (h ``[B, T, H]``, state after the last step)."""
        return self.core(self.encoder(obs), state, first)

    def forward(self, obs: Any, first: Tensor, bins: Tensor) -> Tensor:
        """Teacher-forced Q-values ``[B, T, d, B]`` of a sequence from the initial state."""
        h, _ = self.histories(obs, first)
        return self.head(h, bins)

    @torch.no_grad()
    def act(
        self, obs: Any, first: Tensor, state: dict[str, Tensor] | None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Greedy bins ``[B, T, d]`` for obs ``[B, T, ...]``, and the next state."""
        h, state = self.histories(obs, first, state)
        bins, _ = self.head.greedy(h)
        return bins, state
