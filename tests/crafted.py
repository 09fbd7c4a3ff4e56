"""Tiny R2D2/TD3 checkpoints whose greedy / deterministic policy takes one known action.

Each is a freshly built algorithm whose last layer is set by hand, saved through
``memrl.checkpoints.save`` (manifest included), so that ``memrl eval`` and ``memrl data collect``
have a known answer:

- R2D2 on T-Maze (``R2D2`` overrides), argmax Q = ``RIGHT`` whatever it sees.
- TD3 on Pendulum-P (``TD3`` overrides), actor = ``TD3_ACTION`` = ``2 tanh(0.5)`` at every step.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import torch

from memrl import checkpoints
from memrl.config import load_config

MAX_STEPS = 6
RIGHT = 3
TD3_ACTION = 2.0 * math.tanh(0.5)

# Tiny networks and replay, sampled in the driver: both algorithms' checkpoints share these.
TINY_OFFPOLICY = [
    "model.core_kwargs.hidden_size=8",
    "model.network.encoder_hiddens=[8]",
    "replay.capacity=512",
    "replay.burn_in=2",
    "replay.seq_len=4",
    "replay.chunk_overlap=2",
    "resources.num_env_runners=0",
    "resources.num_envs_per_env_runner=1",
    "resources.num_learners=0",
    "resources.num_gpus_per_learner=0",
]
R2D2 = [
    "task.corridor_len=4",
    "task.num_distractors=0",
    f"task.max_steps={MAX_STEPS}",
    *TINY_OFFPOLICY,
]
TD3 = [*TINY_OFFPOLICY, "model.network.head_hiddens=[8]", "evaluation.success_threshold=0.0"]


def learner_module(algo):
    return algo.learner_group._learner.module["default_policy"]


def save_crafted(config: str, overrides: list[str], out: Path, craft: Callable) -> Path:
    """Build ``config`` with ``overrides``, let ``craft(learner module)`` set weights, save."""
    from memrl.session import build_algorithm

    cfg = load_config(config, [*overrides, f"output_dir={out}", "stop.iterations=1"])
    algo = build_algorithm(cfg)
    try:
        with torch.no_grad():
            craft(learner_module(algo))
        state = checkpoints.CheckpointState(1, 0, 0.0, cfg.name)
        return checkpoints.save(algo, cfg.checkpoint_dir, cfg.to_yaml_dict(), state, keep=1)
    finally:
        algo.stop()


def always_right(module) -> None:
    last = module.q.head.advantage[-1]  # Q = V + A - mean(A): A's bias alone sets the argmax
    last.weight.zero_()
    last.bias.copy_(torch.tensor([0.0, 0.0, 0.0, 5.0]))


def constant_torque(module) -> None:
    last = module.networks.actor_head[-2]  # Linear before the Tanh
    last.weight.zero_()
    last.bias.fill_(0.5)
