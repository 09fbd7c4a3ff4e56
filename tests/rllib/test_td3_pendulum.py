"""Recurrent TD3 learns Pendulum with velocities hidden (memrl/Pendulum-P-v0).

The full RLlib path (env runner -> replay shard actor -> learner) is exercised by
``test_td3_rllib.py``; learning takes thousands of updates, which on 2 CPU cores is too slow with
Ray's per-iteration overhead, so this test drives the *same* replay shard
(:class:`memrl.replay.ReplayShard`, compact per-step state records, stored-state sequences) and
the *same* update (:class:`memrl.rllib.td3.update.TD3Update`) from the lean in-process loop of
:mod:`memrl.rllib.td3.local`. A random policy scores about -1200 per episode.
"""

from __future__ import annotations

import pytest
import torch

from memrl.config import TD3Hyperparameters
from memrl.replay import ChunkConfig, ReplayConfig
from memrl.rllib.td3.local import evaluate, train_local

SEQ_LEN, BURN_IN = 32, 8


@pytest.mark.slow
def test_recurrent_td3_learns_pendulum_with_hidden_velocities():
    torch.set_num_threads(1)
    networks, result = train_local(
        "memrl/Pendulum-P-v0",
        core="gru",
        core_kwargs={"hidden_size": 32},
        network={"encoder_hiddens": [32], "head_hiddens": [64, 64]},
        td3=TD3Hyperparameters(
            actor_lr=1e-3,
            critic_lr=1e-3,
            batch_size=32,
            learning_starts=1000,
            updates_per_iteration=1,
        ),
        replay=ReplayConfig(
            capacity=2**15,
            max_streams=4,
            burn_in=BURN_IN,
            seq_len=SEQ_LEN,
            obs_shape=(2,),
            obs_dtype="float32",
            action_shape=(1,),
            action_dtype="float32",
            prioritized=False,
            seed=0,
        ),
        chunk=ChunkConfig(length=SEQ_LEN + BURN_IN, overlap=(SEQ_LEN + BURN_IN) // 2),
        # One update per 4 env steps: with one update per env step (2 envs, 8k steps) the
        # critic overfit the few episodes and the actor did not learn in 8k updates.
        num_envs=4,
        total_steps=24000,
        seed=0,
    )
    assert result.updates >= 5000
    score = evaluate(
        networks, lambda: __import__("gymnasium").make("memrl/Pendulum-P-v0"), episodes=10, seed=123
    )
    assert score > -400, f"mean return {score:.0f} after {result.updates} updates"
