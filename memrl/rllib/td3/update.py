"""The recurrent TD3 update on replayed sequences (pure PyTorch, no Ray).

One call of :meth:`TD3Update.update` is one critic step on a batch of ``B`` sequences of
``L = burn_in + T`` steps (a :class:`memrl.replay.SequenceBatch`):

1. Targets (no gradient): the target networks run over all ``L`` steps from the stored state;
   ``a'_t = clip(mu'(h'_t) + clip(eps, -c, c), low, high)``;
   ``y_t = r_t + gamma * (1 - terminated_t) * min(Q1'(h'_{t+1}, a'_{t+1}), Q2'(...))``.
2. Critic: the online histories run the burn-in without gradient (from the stored state), then
   the ``T`` training steps; loss ``sum_b w_b sum_t m_bt [(Q1 - y)^2 + (Q2 - y)^2] / sum m``,
   ``w`` the importance weights, ``m`` :func:`td_step_mask` (real steps that have a target).
3. Every ``policy_delay``-th critic step: actor loss ``-mean_t Q1(h_t, mu(h_t))`` over the real
   training steps, with the freshly updated critic, then Polyak updates of all targets.

The priorities sent back to replay come from ``|delta| = (|Q1 - y| + |Q2 - y|) / 2``.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from memrl.config import TD3Hyperparameters
from memrl.replay.batch import SequenceBatch
from memrl.rllib.td3.losses import (
    bootstrap_targets,
    masked_mean,
    next_step,
    polyak_update,
    smoothed_target_action,
    td_step_mask,
)
from memrl.rllib.td3.networks import PREV_ACTION, TD3Networks


@dataclass
class UpdateResult:
    """What one update reports.

    metrics: scalars for logging; td_abs: ``[B, T]`` float32 ``|delta|`` of the training steps;
    td_mask: ``[B, T]`` bool, the steps that had a target (use both for replay priorities).
    """

    metrics: dict[str, float]
    td_abs: np.ndarray
    td_mask: np.ndarray


def batch_tensors(batch: SequenceBatch, device: torch.device | str = "cpu") -> dict[str, Any]:
    """A SequenceBatch as tensors on ``device`` (floats float32, flags bool)."""

    def tensor(x: np.ndarray, dtype: torch.dtype | None = None) -> Tensor:
        return torch.as_tensor(np.asarray(x), device=device, dtype=dtype)

    return {
        "obs": tensor(batch.obs),
        "action": tensor(batch.action, torch.float32),
        "reward": tensor(batch.reward, torch.float32),
        "terminated": tensor(batch.terminated, torch.bool),
        "truncated": tensor(batch.truncated, torch.bool),
        "first": tensor(batch.first, torch.bool),
        "mask": tensor(batch.mask, torch.bool),
        "weights": tensor(batch.weights, torch.float32),
        "state": {
            k: tensor(v, torch.bool if k.endswith("_mask") else torch.float32)
            for k, v in batch.state.items()
        },
        "burn_in": int(batch.burn_in),
    }


_FIELDS = ("obs", "action", "reward", "terminated", "truncated", "first", "mask", "weights")


def as_tensor_dict(batch: Any, device: torch.device | str = "cpu") -> dict[str, Any]:
    """:func:`batch_tensors` of a SequenceBatch; a dict is returned as is; any other object is
    read by attribute (tensors already; action and state values made float32)."""
    if isinstance(batch, dict):
        return batch
    if isinstance(batch, SequenceBatch):
        return batch_tensors(batch, device)
    out: dict[str, Any] = {name: getattr(batch, name) for name in _FIELDS}
    out["action"] = out["action"].float()
    out["state"] = {k: v if k.endswith("_mask") else v.float() for k, v in batch.state.items()}
    out["burn_in"] = int(batch.burn_in)
    return out


class TD3Update:
    """Optimizers, target networks and the delayed schedule of recurrent TD3.

    Args:
        networks: the online :class:`TD3Networks` (updated in place).
        hp: the hyperparameters (``td3:`` section).
        device: where the update runs.
        seed: seed of the target-smoothing noise (None: from torch's global generator).
        actor_optimizer, critic_optimizer: optimizers over ``networks.actor_parameters()`` /
            ``critic_parameters()`` (e.g. registered with an RLlib Learner); default Adam with
            ``actor_lr`` / ``critic_lr``.
        target: the target networks (e.g. held by the RLModule so that they are checkpointed
            with it); default a copy of ``networks``.
    """

    def __init__(
        self,
        networks: TD3Networks,
        hp: TD3Hyperparameters,
        device: torch.device | str = "cpu",
        seed: int | None = None,
        actor_optimizer: torch.optim.Optimizer | None = None,
        critic_optimizer: torch.optim.Optimizer | None = None,
        target: TD3Networks | None = None,
    ) -> None:
        if networks.shared_core != hp.shared_core:
            raise ValueError(
                f"networks.shared_core={networks.shared_core} but td3.shared_core={hp.shared_core}"
            )
        self.hp = hp
        self.device = torch.device(device)
        self.networks = networks.to(self.device)
        if target is None:
            target = copy.deepcopy(networks)
        self.target = target.to(self.device).requires_grad_(False)
        self.actor_optimizer = actor_optimizer or torch.optim.Adam(
            networks.actor_parameters(), lr=hp.actor_lr
        )
        self.critic_optimizer = critic_optimizer or torch.optim.Adam(
            networks.critic_parameters(), lr=hp.critic_lr
        )
        self.critic_updates = 0
        self.actor_updates = 0
        self._generator: torch.Generator | None = None
        if seed is not None:
            self._generator = torch.Generator(device=self.device).manual_seed(seed)

    # --- sequence passes ------------------------------------------------------------------------
    def _online_features(
        self, t: dict[str, Any], with_actor: bool = True
    ) -> tuple[Tensor | None, Tensor]:
        """Online actor/critic features of the training steps; the burn-in gets no gradient."""
        nets, burn_in = self.networks, t["burn_in"]
        state = t["state"]
        if burn_in > 0:
            with torch.no_grad():
                _, _, after = nets.histories(
                    t["obs"][:, :burn_in],
                    t["action"][:, :burn_in],
                    state,
                    t["first"][:, :burn_in],
                    with_actor=with_actor,
                )
            state = {k: v.detach() for k, v in after.items()}
            if nets.stateful:
                state[PREV_ACTION] = t["action"][:, burn_in - 1]
        actor, critic, _ = nets.histories(
            t["obs"][:, burn_in:],
            t["action"][:, burn_in:],
            state,
            t["first"][:, burn_in:],
            with_actor=with_actor,
        )
        return actor, critic

    @torch.no_grad()
    def targets(self, t: dict[str, Any]) -> Tensor:
        """``y`` ``[B, T]`` for the training steps (see the module docstring)."""
        target, hp = self.target, self.hp
        actor, critic, _ = target.histories(t["obs"], t["action"], t["state"], t["first"])
        next_action = smoothed_target_action(
            target.actor(actor),
            target.scale.low,
            target.scale.high,
            hp.target_noise,
            hp.target_noise_clip,
            generator=self._generator,
        )
        q1, q2 = target.q_values(critic, next_action)
        y = bootstrap_targets(t["reward"], t["terminated"], next_step(q1), next_step(q2), hp.gamma)
        return y[:, t["burn_in"] :]

    # --- the update -----------------------------------------------------------------------------
    def update(self, batch: Any) -> UpdateResult:
        """One critic step, plus the actor step and target update every ``policy_delay`` steps.

        ``batch``: a SequenceBatch, its :func:`batch_tensors`, or an object with the same
        attributes as tensors (the off-policy learner's ``SequenceTensors``). Raises ValueError
        when the sequences are not longer than the burn-in.
        """
        t = as_tensor_dict(batch, self.device)
        burn_in, length = t["burn_in"], t["mask"].shape[1]
        if not 0 <= burn_in < length:
            raise ValueError(f"burn_in ({burn_in}) must be in [0, sequence length {length})")
        hp, nets = self.hp, self.networks
        y = self.targets(t)
        step_mask = td_step_mask(t["mask"], t["terminated"])[:, burn_in:]
        actor_features, critic_features = self._online_features(t)
        action = t["action"][:, burn_in:]
        q1, q2 = nets.q_values(critic_features, action)
        delta1, delta2 = q1 - y, q2 - y
        critic_loss = masked_mean(delta1.square() + delta2.square(), step_mask, t["weights"])
        self.critic_optimizer.zero_grad(set_to_none=True)
        critic_loss.backward()
        critic_norm = self._clip(nets.critic_parameters())
        self.critic_optimizer.step()
        self.critic_updates += 1

        td_abs = ((delta1.abs() + delta2.abs()) / 2).detach()
        metrics = {
            "critic_loss": float(critic_loss.detach()),
            "critic_grad_norm": critic_norm,
            "q1_mean": float(masked_mean(q1.detach(), step_mask)),
            "target_mean": float(masked_mean(y, step_mask)),
            "td_abs_mean": float(masked_mean(td_abs, step_mask)),
            "actor_updated": 0.0,
        }
        if self.critic_updates % hp.policy_delay == 0:
            metrics.update(self._actor_step(t, actor_features))
        return UpdateResult(
            metrics=metrics,
            td_abs=td_abs.cpu().numpy().astype(np.float32),
            td_mask=step_mask.cpu().numpy(),
        )

    def _actor_step(self, t: dict[str, Any], actor_features: Tensor) -> dict[str, float]:
        nets, burn_in = self.networks, t["burn_in"]
        # The critic just moved: evaluate the actor against the updated one (as in TD3), with
        # its features recomputed without gradient (the actor loss never trains the critic).
        with torch.no_grad():
            fresh_actor, critic_features = self._online_features(t, with_actor=False)
        if nets.shared_core:
            actor_features = fresh_actor  # the shared history moved with the critic step
        policy_action = nets.actor(actor_features)
        q1, _ = nets.q_values(critic_features, policy_action)
        actor_loss = -masked_mean(q1, t["mask"][:, burn_in:])
        self.actor_optimizer.zero_grad(set_to_none=True)
        actor_loss.backward()
        actor_norm = self._clip(nets.actor_parameters())
        self.actor_optimizer.step()
        # The Q heads got gradients from the actor loss; they are not the critic's to apply.
        self.critic_optimizer.zero_grad(set_to_none=True)
        polyak_update(self.target, nets, self.hp.tau)
        self.actor_updates += 1
        return {
            "actor_loss": float(actor_loss.detach()),
            "actor_grad_norm": actor_norm,
            "actor_updated": 1.0,
        }

    def _clip(self, params: list[torch.nn.Parameter]) -> float:
        """Clip the gradients' global norm (if ``grad_clip``); returns the norm before."""
        grads = [p for p in params if p.grad is not None]
        if not grads:
            return 0.0
        limit = self.hp.grad_clip if self.hp.grad_clip is not None else math.inf
        return float(torch.nn.utils.clip_grad_norm_(grads, limit))

    # --- persistence ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue: networks, targets, optimizers, step counters."""
        return {
            "networks": self.networks.state_dict(),
            "target": self.target.state_dict(),
            "actor_optimizer": self.actor_optimizer.state_dict(),
            "critic_optimizer": self.critic_optimizer.state_dict(),
            "critic_updates": self.critic_updates,
            "actor_updates": self.actor_updates,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.networks.load_state_dict(state["networks"])
        self.target.load_state_dict(state["target"])
        self.actor_optimizer.load_state_dict(state["actor_optimizer"])
        self.critic_optimizer.load_state_dict(state["critic_optimizer"])
        self.critic_updates = int(state["critic_updates"])
        self.actor_updates = int(state["actor_updates"])
