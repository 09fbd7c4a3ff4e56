"""One Q-Transformer learner step (pure PyTorch, no Ray): online net, EMA target, AdamW."""

from __future__ import annotations

import copy
from typing import Any

import torch

from memrl.config import QTransformerHyperparameters
from memrl.rllib.qtransformer.network import QTransformerNetwork
from memrl.rllib.qtransformer.sequences import QTBatch
from memrl.rllib.qtransformer.targets import autoregressive_targets, qtransformer_loss
from memrl.rllib.td3.losses import polyak_update


class QTransformerUpdate:
    """Owns the online network, its EMA target and the optimiser.

    :meth:`update` takes a :class:`QTBatch` (on the network's device) and returns float
    metrics; :meth:`state_dict` / :meth:`load_state_dict` save and restore all three exactly.
    """

    def __init__(self, network: QTransformerNetwork, hp: QTransformerHyperparameters) -> None:
        self.hp = hp
        self.online = network
        self.target = copy.deepcopy(network)
        self.target.requires_grad_(False)
        self.optimizer = torch.optim.AdamW(
            network.parameters(), lr=hp.lr, weight_decay=hp.weight_decay
        )
        self.updates = 0

    def update(self, batch: QTBatch) -> dict[str, float]:
        hp = self.hp
        with torch.no_grad():
            q_target = self.target(batch.obs, batch.first, batch.bins)
            y, valid = autoregressive_targets(
                q_target,
                batch.reward,
                batch.terminated,
                batch.mask,
                gamma=hp.gamma,
                n=hp.n_step,
                mc_return=batch.mc_return if hp.mc_lower_bound else None,
            )
        valid = valid & batch.train[..., None]
        q = self.online(batch.obs, batch.first, batch.bins)
        loss, info = qtransformer_loss(
            q,
            batch.bins,
            y,
            valid,
            alpha=hp.conservative_weight,
            r_min=hp.r_min,
            scale=hp.value_scale,
        )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.online.parameters(), hp.grad_clip)
        self.optimizer.step()
        with torch.no_grad():
            polyak_update(self.target, self.online, 1.0 - hp.target_ema)
        self.updates += 1
        return {
            "loss": float(loss.detach()),
            "td_loss": float(info["td_loss"]),
            "conservative_loss": float(info["conservative_loss"]),
            "q_taken": float(info["q_taken"]),
            "grad_norm": float(grad_norm),
        }

    def state_dict(self) -> dict[str, Any]:
        return {
            "online": self.online.state_dict(),
            "target": self.target.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "updates": self.updates,
            "hyperparameters": self.hp.model_dump(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.online.load_state_dict(state["online"])
        self.target.load_state_dict(state["target"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.updates = int(state["updates"])
