"""Roll a trained memrl checkpoint out into an offline dataset (``memrl data collect CHECKPOINT``).

The checkpoint is verified (:func:`memrl.checkpoints.find_verified`) before anything is
unpickled, built and restored exactly as ``memrl eval`` plays it
(:func:`memrl.eval_policies.local_algorithm`: one local env runner, one env), and sampled with
``env_runner.sample(num_episodes=...)``. The behaviour policy per algorithm:

- td3: the deterministic actor; with ``--noise σ`` the actor plus Gaussian noise of std
  ``σ (high - low) / 2`` (``td3.exploration_noise``'s units, half action ranges), clipped to the
  Box. The uniform-random warm-up of a checkpoint saved before ``td3.learning_starts`` is
  switched off: the noise is the only randomness.
- r2d2: greedy (argmax Q); with ``--epsilon ε`` epsilon-greedy of exactly ε (one actor: the
  Ape-X schedule gives it ``r2d2.epsilon``).
- ppo: greedy (the mode of the action distribution). ``--noise``/``--epsilon`` are refused: a
  PPO policy's own randomness is its distribution, which neither flag describes.
- qtransformer and other algorithms: refused (one line naming what is allowed).

Episodes are recorded as the env saw them: every observation including the final one, the
actions *executed* (RLlib stores the module's actions in its episodes and sends the env
``unsquash``ed or clipped ones when ``normalize_actions``/``clip_actions`` are on, as for PPO's
Gaussian; the same transform is applied here), rewards, and termination vs truncation.
Reproducible for a given ``seed`` (the env runner's env seeds, the torch RNG of TD3's noise and
R2D2's epsilon draws).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from memrl import checkpoints
from memrl.config import ConfigError, TrainConfig, config_from_dict
from memrl.data import DatasetWriter, Episode
from memrl.envs import make_env, resolve_env_id

log = logging.getLogger("memrl.rollout")

ALLOWED = (
    "td3 checkpoint: no flag (deterministic actor) or --noise SIGMA >= 0; r2d2 checkpoint: no "
    "flag (greedy) or --epsilon EPS in [0, 1]; ppo checkpoint: no flag (greedy); a config or "
    "env id (random policy): no flag"
)
# Episodes per env-runner sample call: the dataset is written as it goes, not held in memory.
CHUNK_EPISODES = 10


@dataclass(frozen=True)
class Behaviour:
    """The behaviour policy of a rollout: ``algo``, exploration parameters, description."""

    algo: str
    noise: float | None = None
    epsilon: float | None = None

    @property
    def explore(self) -> bool:
        """Whether the module's exploration forward plays (noise or epsilon given)."""
        return self.noise is not None or self.epsilon is not None

    @property
    def description(self) -> str:
        if self.algo == "td3":
            if self.noise is None:
                return "deterministic actor"
            return f"actor + Gaussian noise (std {self.noise:g} half action ranges), clipped"
        if self.algo == "r2d2":
            if self.epsilon is None:
                return "greedy (argmax Q)"
            return f"epsilon-greedy (epsilon {self.epsilon:g})"
        return "greedy (mode of the action distribution)"

    def configured(self, cfg: TrainConfig) -> TrainConfig:
        """``cfg`` with this behaviour's exploration parameter in place."""
        if self.noise is not None:
            return cfg.model_copy(
                update={"td3": cfg.td3.model_copy(update={"exploration_noise": self.noise})}
            )
        if self.epsilon is not None:
            return cfg.model_copy(
                update={"r2d2": cfg.r2d2.model_copy(update={"epsilon": self.epsilon})}
            )
        return cfg


def behaviour_for(algo: str | None, noise: float | None, epsilon: float | None) -> Behaviour:
    """The behaviour of a checkpoint of ``algo`` (None: no checkpoint, a random policy) with the
    flags given. Raises ConfigError (one line naming the flag and :data:`ALLOWED`) otherwise."""
    if noise is not None and epsilon is not None:
        raise ConfigError(f"--noise and --epsilon: give at most one; allowed: {ALLOWED}")
    source = f"a {algo} checkpoint" if algo else "a random policy (config or env id)"
    if noise is not None and algo != "td3":
        raise ConfigError(f"--noise: not for {source}; allowed: {ALLOWED}")
    if epsilon is not None and algo != "r2d2":
        raise ConfigError(f"--epsilon: not for {source}; allowed: {ALLOWED}")
    if noise is not None and not (np.isfinite(noise) and noise >= 0):
        raise ConfigError(f"--noise: must be a finite number >= 0, got {noise}")
    if epsilon is not None and not 0.0 <= epsilon <= 1.0:
        raise ConfigError(f"--epsilon: must be in [0, 1], got {epsilon}")
    if algo is not None and algo not in ("td3", "r2d2", "ppo"):
        raise ConfigError(
            f"checkpoint: algo {algo!r} checkpoints cannot be rolled out into a dataset; "
            f"allowed: {ALLOWED}"
        )
    return Behaviour(algo or "random", noise, epsilon)


def executed_actions(
    actions: np.ndarray, space: gym.Space, normalize_actions: bool, clip_actions: bool
) -> np.ndarray:
    """The actions RLlib's module-to-env connector sent to the env for the module's ``actions``
    ``[T, ...]``: unsquashed from [-1, 1] into the Box with ``normalize_actions``, else clipped
    to it with ``clip_actions``, else unchanged (Discrete actions are never changed)."""
    from ray.rllib.utils.spaces.space_utils import clip_action, unsquash_action

    if normalize_actions:
        return np.asarray(unsquash_action(actions, space))
    if clip_actions:
        return np.asarray(clip_action(actions, space))
    return np.asarray(actions)


def episode_from_rllib(
    episode: Any,
    episode_id: int,
    action_space: gym.Space,
    normalize_actions: bool = False,
    clip_actions: bool = False,
) -> Episode:
    """A finished RLlib ``SingleAgentEpisode`` as a :class:`memrl.data.Episode`: its ``T + 1``
    observations (the last as ``final_obs``), the executed actions (:func:`executed_actions`),
    float32 rewards, and ``terminated``/``truncated`` as RLlib recorded them. Raises ValueError
    for an unfinished episode or one with lookback (a fragment)."""
    if not episode.is_done:
        raise ValueError(f"episode {episode.id_} is not finished")
    obs = np.asarray(episode.get_observations())
    actions = np.asarray(episode.get_actions())
    rewards = np.asarray(episode.get_rewards(), dtype=np.float32)
    steps = len(rewards)
    if obs.shape[0] != steps + 1 or actions.shape[0] != steps:
        raise ValueError(
            f"episode {episode.id_}: {obs.shape[0]} observations, {actions.shape[0]} actions, "
            f"{steps} rewards (a fragment with lookback?); expected T + 1, T, T"
        )
    return Episode(
        obs=obs[:steps],
        action=executed_actions(actions, action_space, normalize_actions, clip_actions),
        reward=rewards,
        terminated=bool(episode.is_terminated),
        truncated=bool(episode.is_truncated),
        episode_id=episode_id,
        final_obs=obs[steps],
    )


def load_checkpoint_config(checkpoint: str | Path) -> tuple[Path, TrainConfig]:
    """The verified checkpoint folder of ``checkpoint`` and its config. Raises FileNotFoundError
    (no checkpoint there) or CheckpointError (fails verification), before any unpickling."""
    path = checkpoints.find_verified(checkpoint)
    data = checkpoints.load_config_data(path)
    return path, config_from_dict(data, source=str(path / checkpoints.CONFIG_FILE))


def _spaces(cfg: TrainConfig) -> tuple[gym.Space, gym.Space]:
    """(observation space, action space) of ``cfg``'s env."""
    env = make_env(resolve_env_id(cfg.task.env_name), **cfg.task.env_kwargs)
    try:
        return env.observation_space, env.action_space
    finally:
        env.close()


def checkpoint_rollouts(
    cfg: TrainConfig, algorithm_dir: Path, behaviour: Behaviour, episodes: int, seed: int
) -> Iterator[Episode]:
    """``episodes`` episodes of ``behaviour`` from the restored checkpoint (ids 0, 1, ...),
    sampled :data:`CHUNK_EPISODES` at a time in one local env runner."""
    import torch

    from memrl.eval_policies import local_algorithm, sample_episodes

    cfg = behaviour.configured(cfg).model_copy(update={"seed": seed})
    space = _spaces(cfg)[1]
    with local_algorithm(cfg, algorithm_dir) as algo:
        module = algo.env_runner.module
        if behaviour.algo == "td3" and hasattr(module, "set_uniform_exploration"):
            module.set_uniform_exploration(False)
        torch.manual_seed(seed)
        normalize = bool(algo.config.normalize_actions)
        clip = bool(algo.config.clip_actions)
        done = 0
        while done < episodes:
            batch = sample_episodes(algo, min(CHUNK_EPISODES, episodes - done), behaviour.explore)
            if not batch:  # pragma: no cover - RLlib returns the finished episodes it was asked for
                raise RuntimeError(f"the env runner finished no episode ({done} of {episodes})")
            for rl_episode in batch:
                yield episode_from_rllib(rl_episode, done, space, normalize, clip)
                done += 1


def collect_checkpoint(
    checkpoint: str | Path,
    out: str | Path,
    episodes: int,
    *,
    noise: float | None = None,
    epsilon: float | None = None,
    seed: int = 0,
) -> DatasetWriter:
    """Write ``episodes`` episodes of the checkpoint's behaviour (see the module docstring) to a
    new dataset at ``out``; returns the closed writer. The dataset's ``collector`` metadata
    records the policy: checkpoint path, algo, behaviour, noise/epsilon, seed.

    Raises FileNotFoundError / CheckpointError (the checkpoint), ConfigError (flags not allowed
    for its algo, ``episodes`` < 1), ValueError (``out`` already holds data); nothing is written
    then, nor when the rollout itself fails.
    """
    if episodes < 1:
        raise ConfigError(f"--episodes: must be >= 1, got {episodes}")
    path, cfg = load_checkpoint_config(checkpoint)
    behaviour = behaviour_for(cfg.algo, noise, epsilon)
    env_id = resolve_env_id(cfg.task.env_name)
    observation_space, action_space = _spaces(cfg)
    state = checkpoints.load_state(path)
    collector = {
        "policy": "checkpoint",
        "checkpoint": str(path),
        "algo": cfg.algo,
        "behaviour": behaviour.description,
        "noise": noise,
        "epsilon": epsilon,
        "seed": seed,
        "episodes": episodes,
        "checkpoint_iteration": state.iteration,
        "checkpoint_env_steps": state.env_steps,
    }
    with DatasetWriter(
        out,
        observation_space,
        action_space,
        env_id=env_id,
        env_kwargs=cfg.task.env_kwargs,
        collector=collector,
    ) as writer:
        algorithm_dir = path / checkpoints.ALGORITHM_DIR
        for episode in checkpoint_rollouts(cfg, algorithm_dir, behaviour, episodes, seed):
            writer.add(episode)
        log.info("collected %d episodes (%d steps) from %s", episodes, writer.total_steps, path)
    return writer
