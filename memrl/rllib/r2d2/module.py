"""Recurrent Q-network RLModule: encoder + any memory core + (dueling) Q head, Discrete actions.

    obs --encoder--> features --core(state, first)--> y --Q head--> Q [*, num_actions]

``model_config`` keys: ``core`` (a ``memrl.models`` name; ``"mlp"`` has no state), ``core_kwargs``,
``model`` (:class:`memrl.config.NetworkConfig`: encoder_hiddens, head_hiddens, ...),
``r2d2`` (the validated :class:`memrl.config.R2D2Hyperparameters`: ``dueling``, ``epsilon``,
``epsilon_alpha``), ``seed``. Batches and state follow
:class:`memrl.rllib.module.MemoryActorCritic`: ``OBS [B, T, ...]``, ``first [B, T]`` and
``STATE_IN`` for a stateful core; the env runners store the compact per-step record of the
state (:mod:`memrl.rllib.state`).

Exploration is epsilon-greedy with one epsilon per env (Ape-X, see ``configure_actors``);
inference is greedy. The learner-side module also holds a target copy (``target``), excluded
from what env runners receive.
"""

from __future__ import annotations

import copy
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.apis import InferenceOnlyAPI
from ray.rllib.core.rl_module.torch import TorchRLModule
from torch import Tensor, nn

from memrl.config import NetworkConfig
from memrl.models import StateSpec, check_core_name
from memrl.rllib.encoders import mlp
from memrl.rllib.module import FIRST, Branch
from memrl.rllib.r2d2.targets import ape_x_epsilons


class QHead(nn.Module):
    """Features ``[*lead, in_dim]`` -> Q-values ``[*lead, num_actions]`` (dueling or plain)."""

    def __init__(
        self, in_dim: int, num_actions: int, hiddens: tuple[int, ...], act: str, dueling: bool
    ) -> None:
        super().__init__()
        self.dueling = dueling
        body, dim = mlp(in_dim, hiddens, act)
        self.advantage = nn.Sequential(body, nn.Linear(dim, num_actions))
        if dueling:
            value_body, dim = mlp(in_dim, hiddens, act)
            self.value = nn.Sequential(value_body, nn.Linear(dim, 1))

    def forward(self, y: Tensor) -> Tensor:
        adv = self.advantage(y)
        if not self.dueling:
            return adv
        return self.value(y) + adv - adv.mean(dim=-1, keepdim=True)


class QNetwork(nn.Module):
    """Branch (encoder + core) and Q head."""

    def __init__(
        self,
        obs_space: gym.Space,
        num_actions: int,
        core: str,
        core_kwargs: dict,
        cfg: NetworkConfig,
        dueling: bool,
    ) -> None:
        super().__init__()
        self.branch = Branch(obs_space, core, core_kwargs, cfg)
        self.head = QHead(
            self.branch.output_dim, num_actions, cfg.head_hiddens, cfg.activation, dueling
        )

    def forward(
        self, obs: Any, state: dict[str, Tensor] | None, first: Tensor | None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        y, state_out = self.branch(obs, state, first)
        return self.head(y), state_out


class RecurrentQModule(TorchRLModule, InferenceOnlyAPI):
    """R2D2's Q-network over a memory core; see the module docstring."""

    def setup(self) -> None:
        cfg = self.model_config
        core = cfg["core"]
        check_core_name(core, "model_config['core']")
        if not isinstance(self.action_space, gym.spaces.Discrete):
            raise ValueError(
                f"recurrent Q-learning needs a Discrete action space, got {self.action_space}"
            )
        self.num_actions = int(self.action_space.n)
        self.model_cfg = NetworkConfig.from_dict(cfg["model"])
        self.settings = cfg["r2d2"]  # the validated R2D2Hyperparameters (set by r2d2_config)
        self.q = QNetwork(
            self.observation_space,
            self.num_actions,
            core,
            dict(cfg["core_kwargs"]),
            self.model_cfg,
            self.settings.dueling,
        )
        if not self.inference_only:
            self.target = copy.deepcopy(self.q)
            self.target.requires_grad_(False)
        self.epsilons = torch.zeros(0)  # per exploration row; not a parameter, not saved
        self._rng = torch.Generator().manual_seed(int(cfg["seed"] or 0))

    # --- state --------------------------------------------------------------------------------
    @property
    def stateful(self) -> bool:
        return self.q.branch.stateful

    def state_spec(self) -> dict[str, StateSpec]:
        return self.q.branch.core.state_spec()

    def get_initial_state(self) -> dict[str, np.ndarray]:
        return {k: v[0].cpu().numpy() for k, v in self.q.branch.core.initial_state(1).items()}

    def get_non_inference_attributes(self) -> list[str]:
        return ["target"]

    # --- exploration --------------------------------------------------------------------------
    def configure_actors(self, actor_ids: np.ndarray, num_actors: int) -> None:
        """Ape-X epsilons of this env runner's envs (called by OffPolicyEnvRunner)."""
        eps = ape_x_epsilons(int(num_actors), self.settings.epsilon, self.settings.epsilon_alpha)
        self.epsilons = torch.as_tensor(eps[np.asarray(actor_ids)], dtype=torch.float32)
        seed = self.model_config["seed"]
        if seed is not None:
            self._rng = torch.Generator().manual_seed(int(seed) * 1000 + int(actor_ids[0]))

    # --- forward passes -----------------------------------------------------------------------
    def q_values(self, batch: dict[str, Any], network: str = "q") -> tuple[Tensor, dict]:
        """Q ``[B, T, A]`` (stateful) or ``[B, A]`` and the next state, with ``q`` or ``target``."""
        net = getattr(self, network)
        if not self.stateful:
            return net(batch[Columns.OBS], None, None)
        first = batch.get(FIRST)
        if first is not None:
            first = first.to(torch.bool)
        return net(batch[Columns.OBS], batch[Columns.STATE_IN], first)

    def _forward_inference(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        q, state = self.q_values(batch)
        out: dict[str, Any] = {Columns.ACTIONS: q.argmax(dim=-1)}
        if state:
            out[Columns.STATE_OUT] = state
        return out

    def _forward_exploration(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        out = self._forward_inference(batch)
        greedy = out[Columns.ACTIONS]  # [B, T] or [B]
        rows = greedy.shape[0]
        eps = self.epsilons
        if eps.numel() != rows:  # not configured (e.g. a plain env runner): the base epsilon
            eps = torch.full((rows,), float(self.settings.epsilon))
        # One draw per row, shaped like the actions so nothing broadcasts across rows.
        shape = greedy.shape
        explore = torch.rand(shape, generator=self._rng) < eps.view(-1, *[1] * (len(shape) - 1))
        random = torch.randint(0, self.num_actions, shape, generator=self._rng)
        out[Columns.ACTIONS] = torch.where(
            explore.to(greedy.device), random.to(greedy.device), greedy
        )
        return out

    def _forward_train(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        q, _ = self.q_values(batch)
        return {"q": q}

    def sync_target(self) -> None:
        """Copy the online network into the target network."""
        self.target.load_state_dict(self.q.state_dict())
