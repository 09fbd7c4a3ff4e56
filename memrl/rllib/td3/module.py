"""The TD3 RLModule (RLlib new API stack): acts with the actor, carries the compact state.

It wraps :class:`memrl.rllib.td3.networks.TD3Networks` and speaks the same batch layout as
:class:`memrl.rllib.module.MemoryActorCritic`, so memrl's compact-state connectors work unchanged:
``OBS [B, 1, ...]``, ``first [B, 1]`` bool and ``STATE_IN`` (flat state) in; ``ACTIONS [B, 1, A]``
(env units, inside the Box) and ``STATE_OUT`` out. ``STATE_OUT`` holds both histories' next
state *and* ``prev_action`` = the action actually sent to the env (noise included), so the
per-step records replay stores are the state the actor and critic had.

``model_config`` keys (set by :func:`memrl.rllib.td3.build_td3_config`): ``core``,
``core_kwargs``, ``model`` (encoder/head settings), ``td3`` (the validated
:class:`memrl.config.TD3Hyperparameters`: ``shared_core``, ``exploration_noise``)
(std in half action ranges), ``max_seq_len`` (sequence length, for RLlib's bookkeeping).

Exploration: ``forward_exploration`` adds ``N(0, (exploration_noise * (high - low) / 2)^2)`` and
clips; while the buffer ``uniform_exploration`` is 1 (set by the algorithm until
``learning_starts`` env steps, and synced to env runners with the weights) it samples actions
uniformly in the Box instead. ``forward_inference`` is the deterministic actor.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.apis import InferenceOnlyAPI
from ray.rllib.core.rl_module.torch import TorchRLModule
from torch import Tensor

from memrl.models import StateSpec
from memrl.rllib.module import FIRST
from memrl.rllib.td3.losses import gaussian_exploration
from memrl.rllib.td3.networks import PREV_ACTION, TD3Networks


class TD3Module(TorchRLModule, InferenceOnlyAPI):
    """Deterministic recurrent actor + twin critics; see the module docstring.

    The learner-side module also holds the target networks (``target_networks``), which env
    runners neither build nor receive.
    """

    def setup(self) -> None:
        cfg = self.model_config
        hp = cfg["td3"]  # the validated TD3Hyperparameters (set by td3_config)
        self.networks = TD3Networks(
            self.observation_space,
            self.action_space,
            core=cfg["core"],
            core_kwargs=cfg["core_kwargs"],
            network=cfg["model"],
            shared_core=hp.shared_core,
        )
        self.exploration_noise = float(hp.exploration_noise)
        self.register_buffer("uniform_exploration", torch.ones(()))
        if not self.inference_only:
            self.target_networks = copy.deepcopy(self.networks).requires_grad_(False)

    def get_non_inference_attributes(self) -> list[str]:
        return ["target_networks"]

    # --- state ----------------------------------------------------------------------------------
    def state_spec(self) -> dict[str, StateSpec]:
        """Flat state spec: core fields (prefixed per history) and ``prev_action``."""
        return self.networks.state_spec()

    def get_initial_state(self) -> dict[str, np.ndarray]:
        """Unbatched zero state (numpy); ``{}`` for the memoryless core."""
        return {k: v[0].cpu().numpy() for k, v in self.networks.initial_state(1).items()}

    def set_uniform_exploration(self, on: bool) -> None:
        """Uniform random actions in ``forward_exploration`` (before ``learning_starts``)."""
        self.uniform_exploration.fill_(1.0 if on else 0.0)

    # --- forward passes -------------------------------------------------------------------------
    def _act(self, batch: dict[str, Any]) -> tuple[Tensor, dict[str, Tensor]]:
        nets = self.networks
        obs = batch[Columns.OBS]
        if not nets.stateful:
            # Memoryless: [B, ...] observations without a time axis.
            actor, _, _ = nets.histories(obs[:, None], None, {}, _no_first(obs))
            return nets.actor(actor[:, 0]), {}
        state = batch[Columns.STATE_IN]
        first = batch.get(FIRST)
        if first is None:
            first = torch.zeros(
                obs.shape[:2] if isinstance(obs, Tensor) else (1, 1), dtype=torch.bool
            )
        actor, _, next_state = nets.histories(obs, None, state, first.to(torch.bool))
        return nets.actor(actor), next_state

    def _output(self, action: Tensor, next_state: dict[str, Tensor]) -> dict[str, Any]:
        out: dict[str, Any] = {Columns.ACTIONS: action}
        if self.networks.stateful:
            next_state[PREV_ACTION] = action[:, -1]
            out[Columns.STATE_OUT] = next_state
        return out

    def _forward_inference(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        with torch.no_grad():
            return self._output(*self._act(batch))

    def _forward_exploration(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        with torch.no_grad():
            action, next_state = self._act(batch)
            scale = self.networks.scale
            if bool(self.uniform_exploration > 0):
                unit = torch.rand(action.shape, device=action.device) * 2 - 1
                action = scale.env(unit)
            else:
                action = gaussian_exploration(action, scale.low, scale.high, self.exploration_noise)
            return self._output(action, next_state)

    def _forward(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        return self._output(*self._act(batch))

    def _forward_train(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        raise NotImplementedError(
            "TD3Module is trained by memrl.rllib.td3.update.TD3Update on replayed sequences"
        )


def _no_first(obs: Any) -> Tensor:
    batch = obs.shape[0] if isinstance(obs, Tensor) else len(next(iter(obs.values())))
    return torch.zeros(batch, 1, dtype=torch.bool)
