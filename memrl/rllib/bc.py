"""Behaviour cloning on a memory core: the supervised baseline beside Q-Transformer.

The network is Q-Transformer's trunk (:func:`memrl.rllib.encoders.build_encoder` and any core
of :mod:`memrl.models`, run over time and reset at ``first``) with an MLP head that predicts the
dataset's action:

- a Box: the action scaled by its bounds to ``[-1, 1]`` (``u = 2 (a - low) / (high - low) - 1``),
  regressed with mean squared error; played as the prediction clipped to ``[-1, 1]`` and scaled
  back into the Box;
- a Discrete: logits, cross-entropy; played as the argmax.

Sequences are cut as Q-Transformer's (:mod:`memrl.rllib.qtransformer.sequences`): a training
start ``s`` drawn uniformly over all steps, the row replayed from ``max(0, s - burn_in)`` from
the core's initial state, the loss on steps ``s .. s + seq_len - 1`` of the episode. Pure
PyTorch, no Ray.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn

from memrl.config import NetworkConfig
from memrl.data.episode import Episode
from memrl.models import check_core_name, make_core
from memrl.rllib.encoders import build_encoder, mlp
from memrl.rllib.qtransformer.policy import play_episodes
from memrl.rllib.qtransformer.sequences import StepDraws, row_window


@dataclass(frozen=True)
class BCSettings:
    """Sizes and optimiser of :func:`train_bc` (Q-Transformer's defaults where both have one)."""

    batch_size: int = 32
    seq_len: int = 20
    burn_in: int = 10
    lr: float = 3e-4
    grad_clip: float = 10.0
    head_hiddens: tuple[int, ...] = (128,)


@dataclass
class BCBatch:
    """``B`` rows of ``L = burn_in + seq_len`` steps: obs ``[B, L, *obs_shape]``, target
    ``[B, L, d]`` float32 (a Box, in ``[-1, 1]`` units) or ``[B, L]`` long (a Discrete),
    first/train bool ``[B, L]`` (``train``: the steps with a loss)."""

    obs: Tensor
    target: Tensor
    first: Tensor
    train: Tensor

    def to(self, device: torch.device | str) -> BCBatch:
        return BCBatch(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})


class BCActionScale:
    """A Box's actions to and from ``[-1, 1]`` units; a Discrete's to and from ``0 .. n-1``.
    Raises ValueError for any other space or a Box without finite bounds."""

    def __init__(self, space: gym.Space) -> None:
        self.space = space
        self.discrete = isinstance(space, gym.spaces.Discrete)
        if self.discrete:
            self.start, self.dim = int(space.start), int(space.n)
            return
        if not (isinstance(space, gym.spaces.Box) and len(space.shape) == 1):
            raise ValueError(f"behaviour cloning needs a rank-1 Box or a Discrete, got {space}")
        self.low = np.asarray(space.low, np.float64)
        self.high = np.asarray(space.high, np.float64)
        if not (np.all(np.isfinite(self.low)) and np.all(np.isfinite(self.high))):
            raise ValueError(f"action bounds must be finite, got {space}")
        self.dim = int(space.shape[0])

    def to_unit(self, action: np.ndarray) -> np.ndarray:
        """Targets: ``[T, d]`` float32 in ``[-1, 1]`` (a Box), ``[T]`` int64 (a Discrete)."""
        if self.discrete:
            return np.asarray(action, np.int64).reshape(-1) - self.start
        unit = 2.0 * (np.asarray(action, np.float64) - self.low) / (self.high - self.low) - 1.0
        return np.clip(unit, -1.0, 1.0).astype(np.float32)

    def from_output(self, out: np.ndarray) -> np.ndarray:
        """Env actions from the head's output ``[..., d]`` (a Discrete: logits ``[..., n]``)."""
        if self.discrete:
            return np.argmax(out, axis=-1).astype(np.int64) + self.start
        unit = np.clip(out.astype(np.float64), -1.0, 1.0)
        return (self.low + (unit + 1.0) / 2.0 * (self.high - self.low)).astype(self.space.dtype)


class BCSampler:
    """Samples :class:`BCBatch` es from in-memory episodes (seeded). Raises ValueError for no
    non-empty episodes."""

    def __init__(
        self,
        episodes: Sequence[Episode],
        scale: BCActionScale,
        *,
        seq_len: int,
        burn_in: int,
        seed: int = 0,
    ) -> None:
        self.episodes = [e for e in episodes if len(e) > 0]
        if not self.episodes:
            raise ValueError("BCSampler needs at least one non-empty episode")
        self.seq_len, self.burn_in = seq_len, burn_in
        self.length = burn_in + seq_len
        self.targets = [scale.to_unit(e.action) for e in self.episodes]
        self.draws = StepDraws([len(e) for e in self.episodes])
        self.num_steps = self.draws.num_steps
        self.rng = np.random.default_rng(seed)

    def sample(self, batch_size: int) -> BCBatch:
        return self.batch(self.draws.draw(self.rng, batch_size))

    def batch(self, rows: Sequence[tuple[int, int]]) -> BCBatch:
        """The batch of ``(episode index, training start)`` rows (right-padded)."""
        first_obs = np.asarray(self.episodes[0].obs)
        size, length = len(rows), self.length
        obs = np.zeros((size, length, *first_obs.shape[1:]), dtype=first_obs.dtype)
        target_shape = self.targets[0].shape[1:]
        target = np.zeros((size, length, *target_shape), dtype=self.targets[0].dtype)
        train = np.zeros((size, length), dtype=bool)
        for row, (i, s) in enumerate(rows):
            a, b = row_window(s, len(self.episodes[i]), self.burn_in, length)
            obs[row, : b - a] = self.episodes[i].obs[a:b]
            target[row, : b - a] = self.targets[i][a:b]
            train[row, s - a : min(b - a, s - a + self.seq_len)] = True
        first = np.zeros((size, length), dtype=bool)
        first[:, 0] = True
        return BCBatch(
            obs=torch.as_tensor(obs),
            target=torch.as_tensor(target),
            first=torch.as_tensor(first),
            train=torch.as_tensor(train),
        )


class BCPolicy(nn.Module):
    """Encoder + core + MLP head over the action (see the module docstring). ``core``: a name of
    ``memrl.models.CORES`` or ``"mlp"``. Raises ValueError for an unknown core or keyword, or an
    action space :class:`BCActionScale` refuses."""

    def __init__(
        self,
        obs_space: gym.Space,
        action_space: gym.Space,
        core: str,
        core_kwargs: dict[str, Any],
        model: NetworkConfig,
        head_hiddens: tuple[int, ...] = (128,),
    ) -> None:
        super().__init__()
        check_core_name(core)
        self.scale = BCActionScale(action_space)
        self.encoder = build_encoder(obs_space, model)
        self.core = make_core(core, self.encoder.out_dim, **core_kwargs)
        trunk, width = mlp(self.core.output_dim, tuple(head_hiddens), model.activation)
        self.head = nn.Sequential(trunk, nn.Linear(width, self.scale.dim))

    def initial_state(self, batch_size: int, device: Any = None) -> dict[str, Tensor]:
        return self.core.initial_state(batch_size, device)

    def forward(
        self, obs: Any, first: Tensor, state: dict[str, Tensor] | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """obs ``[B, T, ...]``, first ``[B, T]`` bool -> (head output ``[B, T, d]``: unit actions
        or logits, the core's state after the last step)."""
        h, state = self.core(self.encoder(obs), state, first)
        return self.head(h), state

    def loss(self, batch: BCBatch) -> Tensor:
        """Mean over the training steps (and a Box's dims) of the squared error, or the
        cross-entropy for a Discrete."""
        out, _ = self(batch.obs, batch.first)
        mask = batch.train
        if self.scale.discrete:
            return nn.functional.cross_entropy(out[mask], batch.target[mask])
        return ((out - batch.target) ** 2)[mask].mean()

    @torch.no_grad()
    def act(
        self, obs: Any, first: Tensor, state: dict[str, Tensor] | None
    ) -> tuple[np.ndarray, dict[str, Tensor]]:
        """Env actions ``[B, T, ...]`` (numpy) for obs ``[B, T, ...]``, and the next state."""
        out, state = self(obs, first, state)
        return self.scale.from_output(out.cpu().numpy()), state


@dataclass
class BCResult:
    """losses: every update's; timesteps_per_s: sequence steps per second of update time."""

    losses: list[float] = field(default_factory=list)
    updates: int = 0
    time_s: float = 0.0
    timesteps_per_s: float = 0.0


def train_bc(
    episodes: Sequence[Episode],
    obs_space: gym.Space,
    action_space: gym.Space,
    *,
    core: str,
    core_kwargs: dict[str, Any],
    model: NetworkConfig,
    settings: BCSettings,
    updates: int,
    seed: int = 0,
    device: str = "cpu",
) -> tuple[BCPolicy, BCResult]:
    """Train a :class:`BCPolicy` on ``episodes`` for ``updates`` Adam steps of
    ``settings.batch_size`` sequences. Raises ValueError as :class:`BCPolicy` and
    :class:`BCSampler` do."""
    torch.manual_seed(seed)
    policy = BCPolicy(obs_space, action_space, core, core_kwargs, model, settings.head_hiddens).to(
        device
    )
    sampler = BCSampler(
        episodes, policy.scale, seq_len=settings.seq_len, burn_in=settings.burn_in, seed=seed
    )
    optimizer = torch.optim.Adam(policy.parameters(), lr=settings.lr)
    result = BCResult()
    began, learn_time = time.perf_counter(), 0.0
    for _ in range(updates):
        batch = sampler.sample(settings.batch_size).to(device)
        tick = time.perf_counter()
        loss = policy.loss(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(policy.parameters(), settings.grad_clip)
        optimizer.step()
        learn_time += time.perf_counter() - tick
        result.losses.append(float(loss.detach()))
        result.updates += 1
    result.time_s = time.perf_counter() - began
    steps = updates * settings.batch_size * sampler.length
    result.timesteps_per_s = steps / learn_time if learn_time else 0.0
    return policy, result


def play_bc(
    policy: BCPolicy, make_env: Callable[[], gym.Env], episodes: int, seed: int
) -> list[float]:
    """Returns of ``episodes`` episodes of ``policy`` in one env from ``make_env``, reset with
    seeds ``seed, seed + 1, ...``; the core's state is carried and reset at each episode."""
    played = play_episodes(policy, lambda action: action, make_env, episodes, seed)
    return [episode.episode_return for episode in played]
