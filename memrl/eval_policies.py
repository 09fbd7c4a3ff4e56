"""How ``memrl eval`` runs each algorithm's checkpointed policy: one entry per algorithm.

Every algorithm is evaluated the same way: its RLlib algorithm is built for a single local env
runner (one env, no remote actors, no GPU), the checkpoint's weights are restored into it, and
``env_runner.sample(num_episodes=N, explore=...)`` plays the episodes. An entry says what the
policy is without exploration (``explore=False``: the module's ``forward_inference``) and with
it, and how its weights are restored. A new algorithm adds one :func:`register` call (or one
line of :data:`POLICIES`) naming these three things.

- ppo: greedy = the distribution's mode (argmax logits / Gaussian mean); explore = sampled.
- r2d2: greedy = argmax Q; explore = epsilon-greedy with the Ape-X epsilon of one actor.
- td3: deterministic actor; explore = actor plus Gaussian noise (``td3.exploration_noise``).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from memrl.config import ConfigError, ResolvedResources, TrainConfig


@dataclass(frozen=True)
class EvalPolicy:
    """How one algorithm's checkpoint is played.

    ``restore(algo, algorithm_dir)`` loads the weights of ``<checkpoint>/algorithm`` into the
    built ``algo`` (its local env runner must act with them afterwards).
    """

    greedy: str
    sampled: str
    restore: Callable[[Any, Path], None]


def restore_algorithm(algo: Any, algorithm_dir: Path) -> None:
    """The whole RLlib checkpoint (weights, optimizer, connector state)."""
    algo.restore_from_path(str(algorithm_dir))


def restore_weights(algo: Any, algorithm_dir: Path) -> None:
    """Only the learner group's modules, then synced into the env runner: skips what
    evaluation does not use and may be large (an off-policy checkpoint's replay)."""
    algo.restore_from_path(str(algorithm_dir / "learner_group"), component="learner_group")
    algo.env_runner_group.sync_weights(
        from_worker_or_learner_group=algo.learner_group, inference_only=True
    )


POLICIES: dict[str, EvalPolicy] = {
    "ppo": EvalPolicy("greedy (mode of the action distribution)", "sampled", restore_algorithm),
    "r2d2": EvalPolicy("greedy (argmax Q)", "epsilon-greedy (r2d2.epsilon)", restore_weights),
    "td3": EvalPolicy(
        "deterministic actor", "actor + Gaussian noise (td3.exploration_noise)", restore_weights
    ),
}


def register(algo: str, policy: EvalPolicy) -> None:
    """Make ``memrl eval`` play checkpoints of ``algo`` (e.g. Q-Transformer when it lands)."""
    POLICIES[algo] = policy


def policy_for(algo: str) -> EvalPolicy:
    """The entry of ``algo``. Raises ConfigError naming the algorithms that can be evaluated."""
    if algo not in POLICIES:
        raise ConfigError(
            f"algo: memrl eval cannot play {algo!r} checkpoints; it can play {sorted(POLICIES)}"
        )
    return POLICIES[algo]


@dataclass
class PlayedEpisodes:
    """What ``memrl eval`` scores: one entry per finished episode, in the order they ended."""

    returns: list[float] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    final_infos: list[Any] = field(default_factory=list)
    final_rewards: list[float] = field(default_factory=list)
    actions: list[list[Any]] = field(default_factory=list)


def eval_config(cfg: TrainConfig, replay_dir: str) -> TrainConfig:
    """``cfg`` for playing only: an off-policy replay of one small shard without fault-tolerance
    checkpoints (nothing is trained; a full-size replay would allocate its capacity)."""
    if cfg.algo not in ("r2d2", "td3"):
        return cfg
    replay = cfg.replay
    capacity = 4 * (replay.burn_in + replay.seq_len)
    small = replay.model_copy(
        update={
            "num_shards": 1,
            "capacity": capacity,
            "checkpoint_every_steps": 0,
            "checkpoint_dir": replay_dir,
        }
    )
    return cfg.model_copy(update={"replay": small})


def play(
    cfg: TrainConfig,
    algorithm_dir: Path,
    episodes: int,
    explore: bool,
    configure: Callable[[Any], Any] | None = None,
) -> PlayedEpisodes:
    """Play ``episodes`` episodes of the checkpoint at ``algorithm_dir`` in one local env runner.

    ``configure(algorithm_config) -> algorithm_config`` may change the RLlib config before the
    algorithm is built (the video recorder adds its callbacks there). Starts a local Ray (1 CPU)
    if none is running, and stops it afterwards. Raises ConfigError for an algorithm without an
    entry in :data:`POLICIES`.
    """
    import ray

    from memrl.train import build_algorithm_config

    policy = policy_for(cfg.algo)
    started = False
    if not ray.is_initialized():
        ray.init(num_cpus=1, include_dashboard=False)
        started = True
    algo = None
    played = PlayedEpisodes()
    try:
        with tempfile.TemporaryDirectory(prefix="memrl-eval-") as scratch:
            local = ResolvedResources(
                num_env_runners=0,
                num_envs_per_env_runner=1,
                num_learners=0,
                num_gpus_per_learner=0,
            )
            algo_config = build_algorithm_config(eval_config(cfg, scratch), local)
            if configure is not None:
                algo_config = configure(algo_config)
            algo = algo_config.build_algo()
            policy.restore(algo, algorithm_dir)
            done = algo.env_runner.sample(
                num_episodes=episodes, explore=explore, random_actions=False
            )
            for episode in [e for e in done if e.is_done][:episodes]:
                played.returns.append(float(episode.get_return()))
                played.lengths.append(len(episode))
                played.final_infos.append(episode.get_infos(-1))
                played.final_rewards.append(float(episode.get_rewards(-1)))
                played.actions.append(list(episode.get_actions()))
            algo.stop()
            algo = None
    finally:
        if algo is not None:
            algo.stop()
        if started:
            ray.shutdown()
    return played
