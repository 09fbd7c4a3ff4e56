"""Training sequences cut from episodes, for Q-Transformer.

A sample is ``L = burn_in + seq_len + n_step`` consecutive steps of one episode, right-padded:
training starts ``s`` are drawn uniformly over all steps of all episodes; the row begins at
``a = max(0, s - burn_in)`` (so a start near an episode's beginning is replayed from the
beginning, exactly, with no burn-in), the loss covers steps ``s .. s + seq_len - 1``, and the
``n_step`` steps after them only supply bootstrap values. Every row starts from the core's
initial state (``first[:, 0] = True``): the behaviour policy's recurrent states are not used.
Gradients run through the burn-in steps too; only the loss is restricted to the training steps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np
import torch
from torch import Tensor

from memrl.data.episode import Episode
from memrl.rllib.qtransformer.discretise import ActionBins
from memrl.rllib.qtransformer.returns import mc_lower_bound


@dataclass
class QTBatch:
    """``B`` sequences of ``L`` steps. obs ``[B, L, *obs_shape]``; bins ``[B, L, d]`` long;
    reward float32, terminated/first/mask/train bool, mc_return float32 (``-inf``: no bound),
    all ``[B, L]``. ``mask`` is a prefix per row (the episode's steps), ``train`` the steps
    with a loss (within ``mask``)."""

    obs: Tensor
    bins: Tensor
    reward: Tensor
    terminated: Tensor
    first: Tensor
    mask: Tensor
    train: Tensor
    mc_return: Tensor

    def to(self, device: torch.device | str) -> QTBatch:
        return QTBatch(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})


class StepDraws:
    """Training starts drawn uniformly over every step of episodes of ``lengths``: rows of
    ``(episode index, start step)``. Shared by Q-Transformer's and behaviour cloning's samplers."""

    def __init__(self, lengths: Sequence[int]) -> None:
        self.offsets = np.concatenate([[0], np.cumsum(np.asarray(lengths, dtype=np.int64))])
        self.num_steps = int(self.offsets[-1])

    def draw(self, rng: np.random.Generator, batch_size: int) -> list[tuple[int, int]]:
        flat = rng.integers(0, self.num_steps, size=batch_size)
        index = np.searchsorted(self.offsets, flat, side="right") - 1
        starts = flat - self.offsets[index]
        return list(zip(index.tolist(), starts.tolist(), strict=True))


def row_window(start: int, episode_len: int, burn_in: int, length: int) -> tuple[int, int]:
    """Steps ``[a, b)`` of an episode a row holds for training start ``start``: replayed from
    ``a = max(0, start - burn_in)``, at most ``length`` steps, cut at the episode's end."""
    a = max(0, start - burn_in)
    return a, min(episode_len, a + length)


class SequenceSampler:
    """Samples :class:`QTBatch` es from in-memory episodes (seeded; ``state``/``set_state``
    save and restore the generator). Raises ValueError for no episodes or an action outside
    what ``bins`` describes."""

    def __init__(
        self,
        episodes: Sequence[Episode],
        bins: ActionBins,
        *,
        seq_len: int,
        burn_in: int,
        n_step: int,
        gamma: float,
        seed: int = 0,
    ) -> None:
        episodes = [e for e in episodes if len(e) > 0]
        if not episodes:
            raise ValueError("SequenceSampler needs at least one non-empty episode")
        self.episodes = episodes
        self.seq_len, self.burn_in, self.n_step = seq_len, burn_in, n_step
        self.length = burn_in + seq_len + n_step
        self.bins = [bins.to_bins(e.action) for e in episodes]
        self.bounds = [mc_lower_bound(e.reward, e.terminated, gamma) for e in episodes]
        self.draws = StepDraws([len(e) for e in episodes])
        self.num_steps = self.draws.num_steps
        self.obs_shape = np.asarray(episodes[0].obs).shape[1:]
        self.obs_dtype = np.asarray(episodes[0].obs).dtype
        self.num_dims = bins.num_dims
        self.rng = np.random.default_rng(seed)

    def state(self) -> dict:
        return self.rng.bit_generator.state

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state

    def sample(self, batch_size: int) -> QTBatch:
        return self.batch(self.draws.draw(self.rng, batch_size))

    def batch(self, rows: Sequence[tuple[int, int]]) -> QTBatch:
        """The batch of ``(episode index, training start)`` rows."""
        size, length = len(rows), self.length
        obs = np.zeros((size, length, *self.obs_shape), dtype=self.obs_dtype)
        bins = np.zeros((size, length, self.num_dims), dtype=np.int64)
        reward = np.zeros((size, length), dtype=np.float32)
        bound = np.full((size, length), -np.inf, dtype=np.float32)
        terminated = np.zeros((size, length), dtype=bool)
        mask = np.zeros((size, length), dtype=bool)
        train = np.zeros((size, length), dtype=bool)
        for row, (i, s) in enumerate(rows):
            episode = self.episodes[i]
            a, b = row_window(s, len(episode), self.burn_in, length)
            n = b - a
            obs[row, :n] = episode.obs[a:b]
            bins[row, :n] = self.bins[i][a:b]
            reward[row, :n] = episode.reward[a:b]
            bound[row, :n] = self.bounds[i][a:b]
            mask[row, :n] = True
            terminated[row, n - 1] = episode.terminated and b == len(episode)
            train[row, s - a : min(n, s - a + self.seq_len)] = True
        first = np.zeros((size, length), dtype=bool)
        first[:, 0] = True
        return QTBatch(
            obs=torch.as_tensor(obs),
            bins=torch.as_tensor(bins),
            reward=torch.as_tensor(reward),
            terminated=torch.as_tensor(terminated),
            first=torch.as_tensor(first),
            mask=torch.as_tensor(mask),
            train=torch.as_tensor(train),
            mc_return=torch.as_tensor(bound),
        )
