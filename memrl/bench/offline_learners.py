"""``memrl bench offline``'s learners: Q-Transformer and behaviour cloning trained on one dataset
and played greedily, the Q-Transformer learner's speed, and D4RL's normalised score."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

# Greedy evaluations of the offline learners use these env seeds; datasets use others.
EVAL_SEED = 50_000
TIMING_BATCH = 256


def dataset_return(path: Path) -> tuple[float, int, int]:
    """(mean episode return, episodes, steps) of a dataset."""
    from memrl.data import iter_episodes, read_info

    info = read_info(path)
    returns = [e.total_reward for e in iter_episodes(path)]
    return float(np.mean(returns)), info.total_episodes, info.total_steps


def normalized(value: float, random_return: float, expert_return: float) -> float | None:
    """D4RL's ``100 (R - R_random) / (R_expert - R_random)``; None when expert <= random."""
    if not expert_return > random_return:
        return None
    return 100.0 * (value - random_return) / (expert_return - random_return)


def train_and_play(cfg: Any, path: Path, updates: int, eval_episodes: int, seed: int) -> dict:
    """Q-Transformer and BC trained ``updates`` updates each on the dataset at ``path``, then
    played greedily on the same env seeds."""
    from memrl.data import load_episodes
    from memrl.envs import make_env, resolve_env_id
    from memrl.rllib.bc import BCSettings, play_bc, train_bc
    from memrl.rllib.qtransformer import ActionBins
    from memrl.rllib.qtransformer.local import evaluate_greedy, train_offline

    info, episodes = load_episodes(path)
    env_id = resolve_env_id(cfg.task.env_name)

    def env_fn():
        return make_env(env_id, **cfg.task.env_kwargs)

    hp, model = cfg.qtransformer, cfg.model
    tick = time.perf_counter()
    network, _, qt = train_offline(
        (info.observation_space, info.action_space, episodes), core=model.core,
        core_kwargs=dict(model.core_kwargs), model=model.network, hp=hp, updates=updates,
        env_id=env_id, env_kwargs=cfg.task.env_kwargs, seed=seed,
    )  # fmt: skip
    bins = ActionBins(info.action_space, hp.bins)
    qt_return = evaluate_greedy(network, bins, env_fn, eval_episodes, seed=EVAL_SEED)
    qt_time = time.perf_counter() - tick
    settings = BCSettings(
        batch_size=hp.batch_size, seq_len=hp.seq_len, burn_in=hp.burn_in, lr=hp.lr,
        grad_clip=hp.grad_clip, head_hiddens=tuple(hp.head_hiddens),
    )  # fmt: skip
    tick = time.perf_counter()
    policy, bc = train_bc(
        episodes, info.observation_space, info.action_space, core=model.core,
        core_kwargs=dict(model.core_kwargs), model=model.network, settings=settings,
        updates=updates, seed=seed,
    )  # fmt: skip
    bc_return = float(np.mean(play_bc(policy, env_fn, eval_episodes, seed=EVAL_SEED)))
    return {
        "qtransformer_return": qt_return,
        "bc_return": bc_return,
        "qtransformer_loss": float(qt.metrics.get("loss", math.nan)),
        "bc_loss": bc.losses[-1] if bc.losses else math.nan,
        "qtransformer_time_s": qt_time,
        "bc_time_s": time.perf_counter() - tick,
    }


def time_learner(cfg: Any, path: Path, updates: int, device: str, seed: int) -> dict[str, Any]:
    """Q-Transformer learner timesteps/s at a batch of :data:`TIMING_BATCH` sequences on
    ``device``: update time only (batches sampled and moved beforehand), after 2 warm-up
    updates."""
    from memrl.data import load_episodes
    from memrl.rllib.qtransformer import (
        ActionBins,
        QTransformerNetwork,
        QTransformerUpdate,
        SequenceSampler,
    )

    info, episodes = load_episodes(path)
    hp = cfg.qtransformer.model_copy(update={"batch_size": TIMING_BATCH})
    bins = ActionBins(info.action_space, hp.bins)
    sampler = SequenceSampler(
        episodes, bins, seq_len=hp.seq_len, burn_in=hp.burn_in, n_step=hp.n_step,
        gamma=hp.gamma, seed=seed,
    )  # fmt: skip
    torch.manual_seed(seed)
    network = QTransformerNetwork(
        info.observation_space, bins.num_dims, bins.num_bins, cfg.model.core,
        dict(cfg.model.core_kwargs), cfg.model.network, hp,
    ).to(device)  # fmt: skip
    update = QTransformerUpdate(network, hp)
    batches = [sampler.sample(TIMING_BATCH).to(device) for _ in range(updates + 2)]
    for batch in batches[:2]:
        update.update(batch)

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    sync()
    tick = time.perf_counter()
    for batch in batches[2:]:
        update.update(batch)
    sync()
    elapsed = time.perf_counter() - tick
    steps = updates * TIMING_BATCH * sampler.length
    return {
        "device": device,
        "batch_size": TIMING_BATCH,
        "sequence_length": sampler.length,
        "updates": updates,
        "timesteps_per_s": steps / elapsed,
        "updates_per_s": updates / elapsed,
        "threads": torch.get_num_threads(),
    }
