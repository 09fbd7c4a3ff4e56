"""Train PPO on a short T-Maze in-process and measure greedy success (shared by the learning tests).

Success = an episode ends with the +4 reward of the cued arm. The junction observation does not
show the goal side, so a memoryless policy succeeds about half the time. Local sampling only
(``num_env_runners=0``): on 2 CPU cores an env-runner actor only adds overhead.

The time limit defaults to 2x the corridor + 4; a test may raise it (``max_steps``). Nothing
rewards walking right before the junction, so the untrained policy is a random walk that rarely
reaches the junction of corridor 8 in 20 steps (BRT's seed 0 never did in 40 iterations); the
beyond-the-sequence test gives every core 64 (test_every_core_learns.TIME_LIMIT).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from memrl.envs.tmaze import REWARD_CORRECT
from memrl.rllib import build_ppo_config

log = logging.getLogger(__name__)

TRAINING = dict(
    gamma=0.99,
    lambda_=0.95,
    clip_param=0.2,
    train_batch_size_per_learner=512,
    minibatch_size=128,
    num_epochs=6,
    entropy_coeff=0.01,
    vf_loss_coeff=0.5,
    grad_clip=1.0,
)


@dataclass(frozen=True)
class LearningRun:
    success: float
    iterations: int
    seconds: float


def success_rate(algo, episodes: int) -> float:
    """Greedy (explore=False) success over ``episodes`` fresh episodes of the local runner."""
    done = algo.env_runner.sample(num_episodes=episodes, explore=False)
    return float(np.mean([ep.get_rewards(-1) == REWARD_CORRECT for ep in done]))


def train_tmaze(
    core: str,
    core_kwargs: dict,
    *,
    corridor_len: int,
    max_seq_len: int,
    lr: float,
    max_iters: int,
    stop_at: float | None,
    seed: int = 0,
    max_steps: int | None = None,
) -> LearningRun:
    """PPO on ``memrl/TMaze-v0`` (no distractors); every 5 iterations a 50-episode greedy check
    stops training once ``stop_at`` is reached. Returns the final 200-episode greedy success.
    ``max_steps`` is the episode time limit (default 2x the corridor + 4)."""
    if max_steps is None:
        max_steps = 2 * corridor_len + 4
    config = build_ppo_config(
        env="memrl/TMaze-v0",
        env_config={"corridor_len": corridor_len, "max_steps": max_steps},
        core=core,
        core_kwargs=core_kwargs,
        model={"encoder_hiddens": [32]},
        max_seq_len=max_seq_len,
        training={**TRAINING, "lr": lr},
        num_env_runners=0,
        num_envs_per_env_runner=8,
        num_learners=0,
        num_gpus_per_learner=0,
        seed=seed,
    )
    algo = config.build_algo()
    start = time.perf_counter()
    try:
        iters = 0
        while iters < max_iters:
            algo.train()
            iters += 1
            if stop_at is not None and iters % 5 == 0:
                check = success_rate(algo, 50)
                log.info("%s seed %d iteration %d: greedy success %.2f", core, seed, iters, check)
                if check >= stop_at:
                    break
        success = success_rate(algo, 200)
    finally:
        algo.stop()
    run = LearningRun(success, iters, time.perf_counter() - start)
    log.info("%s (corridor %d, max_seq_len %d): %s", core, corridor_len, max_seq_len, run)
    return run
