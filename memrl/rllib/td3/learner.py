"""TD3 learner on the off-policy plumbing: RLlib-registered optimizers around :class:`TD3Update`.

``configure_optimizers_for_module`` registers ``"actor"`` (the actor head, plus the actor
history unless shared) and ``"critic"`` (critic history and twin Q heads) Adam optimizers, so
that RLlib checkpoints them; the target networks live in the module (checkpointed with it, not
sent to env runners). The first update switches the env runners' exploration from uniform
random actions to Gaussian noise (the module's ``uniform_exploration`` buffer, synced with the
weights after each iteration).
"""

from __future__ import annotations

from typing import Any

import torch
from ray.rllib.core import DEFAULT_MODULE_ID

from memrl.rllib.offpolicy import LearnOutput, OffPolicyLearner, SequenceTensors
from memrl.rllib.td3.update import TD3Update


class TD3Learner(OffPolicyLearner):
    """Recurrent TD3 updates on replayed sequences (``config.td3`` holds the hyperparameters)."""

    def configure_optimizers_for_module(self, module_id: str, config: Any = None) -> None:
        hp = config.td3
        networks = self._module[module_id].unwrapped().networks
        for name, params, lr in (
            ("actor", networks.actor_parameters(), hp.actor_lr),
            ("critic", networks.critic_parameters(), hp.critic_lr),
        ):
            self.register_optimizer(
                module_id=module_id,
                optimizer_name=name,
                optimizer=torch.optim.Adam(params, lr=lr),
                params=params,
                lr_or_lr_schedule=lr,
            )

    def build(self) -> None:
        super().build()
        module = self.rl_module
        seed = self.config.seed
        self._td3 = TD3Update(
            module.networks,
            self.config.td3,
            device=self._device,
            seed=None if seed is None else int(seed) + 17,
            actor_optimizer=self.get_optimizer(DEFAULT_MODULE_ID, "actor"),
            critic_optimizer=self.get_optimizer(DEFAULT_MODULE_ID, "critic"),
            target=module.target_networks,
        )

    def learn_on_batch(self, batch: SequenceTensors) -> LearnOutput:
        module = self.rl_module
        if bool(module.uniform_exploration > 0):
            module.set_uniform_exploration(False)
        # The delayed schedule follows the checkpointed update count, so a restored run keeps it.
        self._td3.critic_updates = self.updates
        out = self._td3.update(batch)
        metrics = dict(out.metrics)
        metrics["importance_weight_mean"] = float(batch.weights.mean())
        return LearnOutput(metrics=metrics, td_abs=out.td_abs, td_mask=out.td_mask)
