"""Training FLOPs per timestep of a PPO RLModule, counted by torch's ``FlopCounterMode``.

``memrl bench ppo`` puts this beside each configuration's learner time, so the table itself
says whether a slow learner does more arithmetic or does it less efficiently. The count is one
forward and backward pass of the PPO loss's model part (``forward_train``, then
``compute_values`` on its embeddings, as RLlib's PPO learner calls them) over ``[B, T]``
sequences of sampled observations, divided by ``B * T``. ``FlopCounterMode`` counts matrix
products, convolutions and attention kernels only, not elementwise work (activations, gates,
norms, a linear recurrence's decays), so cores heavy in elementwise work are under-counted.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode


def _batched(value: Any, sequences: int) -> Any:
    """A state structure (dicts of arrays/tensors, unbatched) repeated ``sequences`` times."""
    if isinstance(value, dict):
        return {k: _batched(v, sequences) for k, v in value.items()}
    tensor = torch.as_tensor(np.asarray(value))
    return tensor.unsqueeze(0).repeat(sequences, *([1] * tensor.dim()))


def sequence_batch(module, seq_len: int, sequences: int, seed: int = 0) -> dict[str, Any]:
    """A training batch for ``module``: sampled observations ``[B, T, ...]``, its initial state,
    and memrl's ``first`` flags (no episode start inside) where the module reads them."""
    from ray.rllib.core.columns import Columns

    from memrl.rllib.module import FIRST, MemoryActorCritic

    space = module.observation_space
    space.seed(seed)
    obs = np.stack([space.sample() for _ in range(sequences * seq_len)])
    batch: dict[str, Any] = {
        Columns.OBS: torch.as_tensor(obs).reshape(sequences, seq_len, *obs.shape[1:]),
    }
    state = module.get_initial_state()
    if state:
        batch[Columns.STATE_IN] = _batched(state, sequences)
    if isinstance(module, MemoryActorCritic):
        batch[FIRST] = torch.zeros(sequences, seq_len, dtype=torch.bool)
    return batch


def train_flops_per_timestep(module, seq_len: int, sequences: int = 4) -> float:
    """Forward + backward FLOPs of the PPO model pass per timestep (see the module docstring).

    The module's gradients are zeroed afterwards; its weights are not changed."""
    from ray.rllib.core.columns import Columns

    batch = sequence_batch(module, seq_len, sequences)
    was_training = module.training
    module.train()
    try:
        with FlopCounterMode(display=False) as counter:
            out = module.forward_train(batch)
            values = module.compute_values(batch, embeddings=out.get(Columns.EMBEDDINGS))
            loss = out[Columns.ACTION_DIST_INPUTS].float().sum() + values.float().sum()
            loss.backward()
    finally:
        module.zero_grad(set_to_none=True)
        module.train(was_training)
    return counter.get_total_flops() / (sequences * seq_len)


def learner_train_flops_per_timestep(algo, seq_len: int) -> float:
    """``train_flops_per_timestep`` of the default module on ``algo``'s (first) learner: the
    module that trains, not the env runners' inference-only copy."""
    from ray.rllib.core import DEFAULT_MODULE_ID

    def count(learner) -> float:
        return train_flops_per_timestep(learner.module[DEFAULT_MODULE_ID], seq_len)

    results = algo.learner_group.foreach_learner(count)
    return next(iter(results)).get()
