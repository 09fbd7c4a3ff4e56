"""One episode (or a fragment of one) as plain numpy arrays: what every reader returns."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(eq=False)
class Episode:
    """``T`` consecutive steps of one episode.

    obs ``[T, *obs_shape]``, action ``[T, *action_shape]``, reward float32 ``[T]`` (the reward
    after each step's action). ``terminated``/``truncated``: how the last step ended the episode
    (both False: unfinished, the data stops there). ``starts_at_first``: step 0 is the episode's
    first step (False: a fragment that begins after a gap). ``final_obs``: the observation after
    the last step, where the source stores it (Minari-layout datasets do; replay shards do not).
    ``source``: the file the episode came from, for messages.
    """

    obs: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    terminated: bool
    truncated: bool
    episode_id: int
    starts_at_first: bool = True
    final_obs: np.ndarray | None = None
    stream: int | None = None
    start_step: int = 0
    source: str = ""

    def __len__(self) -> int:
        return len(self.reward)

    @property
    def finished(self) -> bool:
        return self.terminated or self.truncated

    @property
    def total_reward(self) -> float:
        return float(np.sum(self.reward, dtype=np.float64))
