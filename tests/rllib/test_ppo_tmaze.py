"""PPO learns T-Maze with memory and cannot without it (fixed seeds, local sampling).

Success = an episode ends with the +4 reward (the cued arm). A memoryless policy sees the same
junction observation for both goals, so its greedy success is about 50%.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import pytest

pytestmark = pytest.mark.slow

ray = pytest.importorskip("ray")

from memrl.envs.tmaze import REWARD_CORRECT  # noqa: E402
from memrl.rllib import build_ppo_config  # noqa: E402

log = logging.getLogger(__name__)

ENV_CONFIG = {"corridor_len": 6, "max_steps": 16}
TRAINING = dict(
    lr=3e-3,
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
CORES = {
    "gru": dict(hidden_size=32),
    "gtrxl": dict(d_model=32, num_layers=1, num_heads=2, memory_len=8, d_ff=64),
    "mlp": dict(hidden_size=32),
}
# GTrXL is less stable at 3e-3 (one of seeds 0-3 stayed at chance for 40 iterations); at 2e-3
# seeds 0-3 reached >= 95% within 15-40 iterations.
LR = {"gru": 3e-3, "gtrxl": 2e-3, "mlp": 3e-3}


def _success_rate(algo, episodes: int) -> float:
    """Greedy (explore=False) success over ``episodes`` fresh episodes of the local runner."""
    done = algo.env_runner.sample(num_episodes=episodes, explore=False)
    return float(np.mean([ep.get_rewards(-1) == REWARD_CORRECT for ep in done]))


def _train(core: str, max_iters: int, stop_at: float | None) -> tuple[float, int, float]:
    """Train; every 5 iterations evaluate and stop once ``stop_at`` is reached.
    Returns (final success over 200 episodes, iterations, seconds)."""
    config = build_ppo_config(
        env="memrl/TMaze-v0",
        env_config=ENV_CONFIG,
        core=core,
        core_kwargs=CORES[core],
        model={"encoder_hiddens": [32]},
        max_seq_len=16,
        training={**TRAINING, "lr": LR[core]},
        num_env_runners=0,
        num_envs_per_env_runner=8,
        num_learners=0,
        num_gpus_per_learner=0,
        seed=0,
    )
    algo = config.build_algo()
    start = time.perf_counter()
    try:
        iters = 0
        while iters < max_iters:
            algo.train()
            iters += 1
            if stop_at is not None and iters % 5 == 0 and _success_rate(algo, 50) >= stop_at:
                break
        success = _success_rate(algo, 200)
    finally:
        algo.stop()
    seconds = time.perf_counter() - start
    log.info("%s: success %.3f after %d iterations, %.0fs", core, success, iters, seconds)
    return success, iters, seconds


@pytest.mark.parametrize("core", ["gru", "gtrxl"])
def test_memory_core_solves_tmaze(ray_local, core: str) -> None:
    success, iters, seconds = _train(core, max_iters=60, stop_at=0.98)
    assert success >= 0.95, f"{core}: success {success:.2f} after {iters} iters ({seconds:.0f}s)"


def test_memoryless_baseline_stays_at_chance(ray_local) -> None:
    success, iters, seconds = _train("mlp", max_iters=20, stop_at=None)
    # Chance is 0.5; 200 episodes give a standard error of 0.035.
    assert success <= 0.62, f"mlp: success {success:.2f} after {iters} iters ({seconds:.0f}s)"
