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
- qtransformer: no RLlib algorithm and no Ray: its entry has its own ``play``, greedy decoding
  dimension by dimension (argmax of each ``Q^i`` given the bins chosen before it) in one env in
  this process; offline-trained, it has no exploration policy (``--explore`` is an error).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from memrl.config import ConfigError, TrainConfig
from memrl.resources import ResolvedResources


@dataclass(frozen=True)
class EvalPolicy:
    """How one algorithm's checkpoint is played.

    ``restore(algo, algorithm_dir)`` loads the weights of ``<checkpoint>/algorithm`` into the
    built ``algo`` (its local env runner must act with them afterwards). ``play``, when set,
    replaces :func:`play` for this algorithm entirely (same arguments and result; for an
    algorithm that is not an RLlib one); ``restore`` is then unused.
    """

    greedy: str
    sampled: str
    restore: Callable[[Any, Path], None]
    play: Callable[..., PlayedEpisodes] | None = None


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


def play_qtransformer(
    cfg: TrainConfig,
    algorithm_dir: Path,
    episodes: int,
    explore: bool,
    configure: Callable[[Any], Any] | None = None,
) -> PlayedEpisodes:
    """Greedy Q-Transformer episodes in this process (no Ray), reset seeds ``cfg.seed``,
    ``cfg.seed + 1``, ... Raises ConfigError for ``--explore`` or ``--video``."""
    if explore:
        raise ConfigError(
            "--explore: qtransformer is trained offline and has no exploration policy; "
            "evaluate it greedily (drop --explore)"
        )
    if configure is not None:
        raise ConfigError("--video: not available for qtransformer checkpoints yet")
    from memrl.envs import make_env, resolve_env_id
    from memrl.rllib.qtransformer import load_policy, play_greedy

    network, bins = load_policy(cfg, algorithm_dir)
    env_id = resolve_env_id(cfg.task.env_name)
    done = play_greedy(
        network, bins, lambda: make_env(env_id, **cfg.task.env_kwargs), episodes,
        seed=cfg.seed if cfg.seed is not None else 0,
    )  # fmt: skip
    played = PlayedEpisodes()
    for e in done:
        played.add(e.episode_return, e.length, e.final_info, e.final_reward, e.actions)
    return played


POLICIES: dict[str, EvalPolicy] = {
    "ppo": EvalPolicy("greedy (mode of the action distribution)", "sampled", restore_algorithm),
    "r2d2": EvalPolicy("greedy (argmax Q)", "epsilon-greedy (r2d2.epsilon)", restore_weights),
    "td3": EvalPolicy(
        "deterministic actor", "actor + Gaussian noise (td3.exploration_noise)", restore_weights
    ),
    "qtransformer": EvalPolicy(
        "greedy (argmax Q per action dimension, in order)",
        "none (offline: no exploration policy)",
        restore_algorithm,
        play=play_qtransformer,
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

    def add(
        self, episode_return: float, length: int, final_info: Any, final_reward: float,
        actions: list[Any],
    ) -> None:  # fmt: skip
        """One finished episode."""
        self.returns.append(float(episode_return))
        self.lengths.append(int(length))
        self.final_infos.append(final_info)
        self.final_rewards.append(float(final_reward))
        self.actions.append(actions)


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


@contextmanager
def local_algorithm(
    cfg: TrainConfig, algorithm_dir: Path, configure: Callable[[Any], Any] | None = None
) -> Iterator[Any]:
    """The RLlib algorithm of ``cfg`` built for one local env runner (one env, no remote actors,
    no GPU) with the checkpoint at ``algorithm_dir`` restored by ``cfg.algo``'s entry; what
    :func:`play` and ``memrl data collect`` sample from (``algo.env_runner.sample``).

    ``configure(algorithm_config) -> algorithm_config`` may change the RLlib config before the
    algorithm is built. Starts a local Ray (1 CPU) if none is running; the algorithm (and a Ray
    it started) is stopped on leaving. Raises ConfigError for an algorithm without an entry in
    :data:`POLICIES` or one that is not an RLlib algorithm (an entry with its own ``play``).
    """
    import ray

    from memrl.session import build_algorithm_config

    policy = policy_for(cfg.algo)
    if policy.play is not None:
        raise ConfigError(f"algo: {cfg.algo!r} is not an RLlib algorithm; it has its own play")
    started = False
    if not ray.is_initialized():
        ray.init(num_cpus=1, include_dashboard=False)
        started = True
    algo = None
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
            yield algo
            algo.stop()
            algo = None
    finally:
        if algo is not None:
            algo.stop()
        if started:
            ray.shutdown()


def sample_episodes(algo: Any, episodes: int, explore: bool) -> list[Any]:
    """``episodes`` finished RLlib episodes (``SingleAgentEpisode``) from ``algo``'s local env
    runner, in the order they ended; the envs are reset first."""
    done = algo.env_runner.sample(num_episodes=episodes, explore=explore, random_actions=False)
    return [e for e in done if e.is_done][:episodes]


def play(
    cfg: TrainConfig,
    algorithm_dir: Path,
    episodes: int,
    explore: bool,
    configure: Callable[[Any], Any] | None = None,
) -> PlayedEpisodes:
    """Play ``episodes`` episodes of the checkpoint at ``algorithm_dir`` in one local env runner
    (:func:`local_algorithm`; ``configure`` as there), or through the entry's own ``play``.
    Raises ConfigError for an algorithm without an entry in :data:`POLICIES`.
    """
    policy = policy_for(cfg.algo)
    if policy.play is not None:
        return policy.play(cfg, algorithm_dir, episodes, explore, configure)
    played = PlayedEpisodes()
    with local_algorithm(cfg, algorithm_dir, configure) as algo:
        for e in sample_episodes(algo, episodes, explore):
            played.add(
                e.get_return(), len(e), e.get_infos(-1), e.get_rewards(-1), list(e.get_actions())
            )
    return played
