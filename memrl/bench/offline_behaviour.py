"""``memrl bench offline``'s behaviour policies: a recurrent TD3 trained in this process, its
evaluated snapshots, the medium and expert ones picked and saved as memrl checkpoints."""

from __future__ import annotations

import copy
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

EVALS = 8  # TD3 evaluations (and kept snapshots) per training run
# The lean recurrent TD3 that learns Pendulum-P in 24k env steps (tests/rllib/test_td3_pendulum):
# GRU 32, heads [64, 64], lr 1e-3, one update per 4 env steps of 4 envs, sequences 8 + 32.
TD3_CONFIG = "td3/pendulum_p_gru"
TD3_OVERRIDES = (
    "model.core_kwargs.hidden_size=32",
    "model.network.encoder_hiddens=[32]",
    "model.network.head_hiddens=[64,64]",
    "td3.actor_lr=0.001",
    "td3.critic_lr=0.001",
    "td3.updates_per_iteration=1",
    "replay.burn_in=8",
    "replay.seq_len=32",
    "replay.chunk_overlap=20",
    "replay.capacity=32768",
    "resources.num_env_runners=0",
    "resources.num_envs_per_env_runner=1",
    "resources.num_learners=0",
    "resources.num_gpus_per_learner=0",
)
TD3_ENVS = 4


@dataclass
class Snapshot:
    """The TD3 actor after ``env_steps`` env steps, its evaluation ``score`` and weights."""

    env_steps: int
    score: float
    weights: dict[str, torch.Tensor] = field(repr=False)


def pick_medium_expert(
    snapshots: list[Snapshot], random_return: float, fraction: float
) -> tuple[int, int]:
    """(medium, expert) indices: expert the best score (the later on a tie), medium among the
    earlier snapshots the one whose score is nearest ``random + fraction (expert - random)``
    (the first snapshot when expert is the first). Raises ValueError for no snapshots."""
    if not snapshots:
        raise ValueError("no TD3 snapshots to choose from")
    scores = [s.score for s in snapshots]
    expert = max(range(len(scores)), key=lambda i: (scores[i], i))
    earlier = list(range(expert)) or [expert]
    target = random_return + fraction * (scores[expert] - random_return)
    medium = min(earlier, key=lambda i: (abs(scores[i] - target), -i))
    return medium, expert


def td3_config(overrides: tuple[str, ...], output_dir: Path, seed: int, quick: bool) -> Any:
    """The TD3 behaviour config: :data:`TD3_CONFIG` with :data:`TD3_OVERRIDES`, then a task's
    ``overrides``; ``quick`` starts learning after 500 env steps instead of 1000."""
    from memrl.config import load_config

    quick_overrides = ("td3.learning_starts=500",) if quick else ()
    every = [*TD3_OVERRIDES, *overrides, *quick_overrides]
    return load_config(TD3_CONFIG, [*every, f"output_dir={output_dir}", f"seed={seed}"])


def train_td3_snapshots(cfg: Any, steps: int, eval_episodes: int, seed: int) -> list[Snapshot]:
    """Train ``cfg``'s TD3 for ``steps`` env steps in this process, keeping :data:`EVALS`
    evaluated snapshots."""
    from memrl.envs import make_env, resolve_env_id
    from memrl.replay import ChunkConfig, ReplayConfig
    from memrl.rllib.td3.local import train_local

    env_id = resolve_env_id(cfg.task.env_name)
    env = make_env(env_id, **cfg.task.env_kwargs)
    replay = cfg.replay
    length = replay.burn_in + replay.seq_len
    snapshots: list[Snapshot] = []

    def keep(env_steps: int, score: float, networks: Any) -> None:
        snapshots.append(Snapshot(env_steps, score, copy.deepcopy(networks.state_dict())))

    train_local(
        env_id,
        core=cfg.model.core,
        core_kwargs=dict(cfg.model.core_kwargs),
        network=cfg.model.network.set_fields(),
        td3=cfg.td3,
        replay=ReplayConfig(
            capacity=replay.capacity - replay.capacity % TD3_ENVS,
            max_streams=TD3_ENVS,
            burn_in=replay.burn_in,
            seq_len=replay.seq_len,
            obs_shape=tuple(env.observation_space.shape),
            obs_dtype=str(env.observation_space.dtype),
            action_shape=tuple(env.action_space.shape),
            action_dtype=str(env.action_space.dtype),
            state_storage=replay.state_storage,
            prioritized=replay.prioritized,
            alpha=replay.alpha,
            beta=replay.beta,
            eta=replay.eta,
            seed=seed,
        ),
        chunk=ChunkConfig(length=length, overlap=replay.chunk_overlap),
        num_envs=TD3_ENVS,
        total_steps=steps,
        eval_every=max(1, steps // EVALS),
        eval_episodes=eval_episodes,
        seed=seed,
        env_kwargs=cfg.task.env_kwargs,
        on_eval=keep,
    )
    return snapshots


def save_td3_checkpoint(cfg: Any, snapshot: Snapshot, root: Path) -> Path:
    """``snapshot`` as a memrl checkpoint of ``cfg`` under ``root`` (an RLlib TD3 built for one
    local env runner, its actor/critics and targets set to the snapshot's weights, no warm-up
    exploration left); needs a running Ray."""
    from memrl import checkpoints
    from memrl.eval_policies import eval_config
    from memrl.resources import ResolvedResources
    from memrl.session import build_algorithm_config

    local = ResolvedResources(
        num_env_runners=0, num_envs_per_env_runner=1, num_learners=0, num_gpus_per_learner=0
    )

    def load(learner: Any) -> None:
        module = learner.module["default_policy"].unwrapped()
        module.networks.load_state_dict(snapshot.weights)
        module.target_networks.load_state_dict(snapshot.weights)
        module.set_uniform_exploration(False)

    with tempfile.TemporaryDirectory(prefix="memrl-bench-") as scratch:
        small = eval_config(cfg, scratch)
        # No replay in the checkpoint: there is nothing in it worth keeping (and saving the
        # shards takes seconds).
        small = small.model_copy(
            update={"replay": small.replay.model_copy(update={"checkpoint_every": 0})}
        )
        algo = build_algorithm_config(small, local).build_algo()
        try:
            algo.learner_group.foreach_learner(load)
            state = checkpoints.CheckpointState(0, snapshot.env_steps, 0.0, cfg.name)
            return checkpoints.save(algo, root, cfg.to_yaml_dict(), state, keep=1)
        finally:
            algo.stop()
