"""``memrl.bench.flops``: the learner's forward + backward FLOPs per timestep."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

pytest.importorskip("ray")

from memrl.bench.flops import train_flops_per_timestep  # noqa: E402
from memrl.rllib.module import MemoryActorCritic  # noqa: E402


def module(core: str, **core_kwargs) -> MemoryActorCritic:
    return MemoryActorCritic(
        observation_space=gym.spaces.Box(-1, 1, (3,), np.float32),
        action_space=gym.spaces.Discrete(2),
        inference_only=False,
        model_config={"core": core, "core_kwargs": core_kwargs, "model": {}, "max_seq_len": 5},
    )


def test_an_all_linear_module_counts_forward_weight_and_input_gradients():
    m = module("mlp", hidden_size=8)
    linears = [layer for layer in m.modules() if isinstance(layer, torch.nn.Linear)]
    first = m.pi_branch.encoder.mlp[0]
    assert first in linears and len(linears) == 4  # encoder, core, policy head, value head
    # Per timestep, 2*in*out for the forward, the weight gradient and the input gradient of
    # each Linear, except the first one's input gradient: observations need none.
    expected = sum(6 * lin.in_features * lin.out_features for lin in linears)
    expected -= 2 * first.in_features * first.out_features
    assert train_flops_per_timestep(m, seq_len=5) == expected


def test_per_timestep_count_ignores_batch_size_and_leaves_the_module_unchanged():
    torch.manual_seed(0)
    m = module("gru", hidden_size=8)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    m.eval()
    two, four = (train_flops_per_timestep(m, 5, sequences=n) for n in (2, 4))
    assert two == four > 0
    assert not m.training  # mode restored
    assert all(p.grad is None for p in m.parameters())
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())


def test_attention_flops_grow_with_the_window():
    kw = dict(d_model=16, num_layers=1, num_heads=2, d_ff=32)
    short, long = (
        train_flops_per_timestep(module("gtrxl", memory_len=m, **kw), 5) for m in (4, 64)
    )
    assert long > short
