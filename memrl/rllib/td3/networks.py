"""Recurrent TD3 networks (pure PyTorch): a deterministic actor and twin critics over any core.

Following Ni et al. (2022, "Recurrent model-free RL can be a strong baseline for many POMDPs"),
each memory *history* reads the observation and the previous action (the action history helps
infer the hidden part of the state, e.g. a pendulum's velocity):

    x_t = [encoder(o_t), unit(a_{t-1})]    (a_{t-1} = 0 at an episode's first step)
    h_t = core(x_1..x_t)                     (resets where ``first``)
    actor:  mu_t = scale(tanh(MLP_pi(h^pi_t)))             in the Box bounds
    critic: Q_i(h^Q_t, a_t) = MLP_Qi([h^Q_t, unit(a_t)]),  i = 1, 2

The current action enters the critic *after* its core, so the critic's core never needs an
action that has not been taken yet: both cores advance while acting and replay stores the state
each one had. ``unit`` maps an action from the Box bounds to [-1, 1].

Twin critics share one history (encoder + core) and have separate MLP heads, as in Ni et al.'s
recurrent critic; with ``shared_core=False`` (the default, Ni et al.'s recommendation) the actor
has its own history. With ``shared_core=True`` one history feeds actor and critics and only the
critic loss trains it: the actor head reads its features detached.

State (``state_spec()``): the core fields, prefixed ``actor/`` and ``critic/`` with separate
cores (unprefixed with a shared core), plus the carry ``prev_action`` ``[A]`` (env units): the
action taken at the step before, so that a replayed sequence knows ``a_{t-1}`` of its first
step. A core without state (``"mlp"``) reads the observation only; the module then has none.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn

from memrl.config import NetworkConfig
from memrl.models import StateSpec, check_core_name, make_core, state_kinds
from memrl.rllib.encoders import build_encoder, mlp

ACTOR = "actor/"
CRITIC = "critic/"
PREV_ACTION = "prev_action"


def check_action_space(space: gym.Space) -> gym.spaces.Box:
    """The Box itself; ValueError unless it is a rank-1 float Box with finite bounds."""
    if not (
        isinstance(space, gym.spaces.Box)
        and len(space.shape) == 1
        and np.issubdtype(space.dtype, np.floating)
    ):
        raise ValueError(f"TD3 needs a rank-1 float Box action space, got {space}")
    if not (np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high))):
        raise ValueError(f"TD3 needs finite action bounds, got low={space.low}, high={space.high}")
    if np.any(space.high <= space.low):
        raise ValueError(f"TD3 needs high > low in every action dim, got {space}")
    return space


def td3_network(network: Mapping[str, Any] | None) -> NetworkConfig:
    """The validated ``model.network`` keys given for TD3.

    Raises ValueError for a bad key, PPO's ``shared_core`` (TD3 has ``td3.shared_core``), or an
    empty ``head_hiddens`` (a Q head linear in the action gives the actor a constant gradient).
    """
    network = dict(network or {})
    if "shared_core" in network:
        raise ValueError("model.network.shared_core is PPO's setting; for TD3 set td3.shared_core")
    cfg = NetworkConfig.from_dict(network)
    if not cfg.head_hiddens:
        raise ValueError(
            "TD3 needs non-empty model.network.head_hiddens (e.g. [256, 256]): a Q head linear "
            "in the action gives the actor a constant gradient"
        )
    return cfg


class ActionScale(nn.Module):
    """Affine map between the Box bounds and [-1, 1] (``unit``/``env``), and clipping."""

    def __init__(self, space: gym.spaces.Box) -> None:
        super().__init__()
        low = torch.as_tensor(space.low, dtype=torch.float32)
        high = torch.as_tensor(space.high, dtype=torch.float32)
        self.register_buffer("low", low)
        self.register_buffer("high", high)
        self.register_buffer("center", (high + low) / 2)
        self.register_buffer("half_range", (high - low) / 2)

    def unit(self, action: Tensor) -> Tensor:
        """Env units ``[..., A]`` -> [-1, 1]."""
        return (action - self.center) / self.half_range

    def env(self, unit: Tensor) -> Tensor:
        """[-1, 1] ``[..., A]`` -> env units."""
        return self.center + unit * self.half_range

    def clip(self, action: Tensor) -> Tensor:
        """Clip env-unit actions ``[..., A]`` to the bounds."""
        return torch.maximum(torch.minimum(action, self.high), self.low)


class History(nn.Module):
    """Encoder + core over ``[encoder(obs), unit(prev_action)]`` (memoryless: ``encoder(obs)``).

    forward: obs ``[B, T, *obs_shape]``, prev_action ``[B, T, A]`` in [-1, 1], state (the core's,
    unprefixed), first ``[B, T]`` bool -> (features ``[B, T, output_dim]``, next state).
    """

    def __init__(
        self,
        obs_space: gym.Space,
        action_dim: int,
        core: str,
        core_kwargs: dict,
        cfg: NetworkConfig,
    ) -> None:
        super().__init__()
        self.encoder = build_encoder(obs_space, cfg)
        # A core without state gets no action input: it could not remember a_{t-1} anyway.
        self.stateful = bool(state_kinds(core, **core_kwargs))
        in_dim = self.encoder.out_dim + (action_dim if self.stateful else 0)
        self.core = make_core(core, in_dim, **core_kwargs)
        self.output_dim: int = self.core.output_dim

    def forward(
        self, obs: Any, prev_action: Tensor, state: dict[str, Tensor] | None, first: Tensor
    ) -> tuple[Tensor, dict[str, Tensor]]:
        features = self.encoder(obs)
        if self.stateful:
            features = torch.cat([features, prev_action.to(features.dtype)], dim=-1)
        return self.core(features, state, first)


class CriticHead(nn.Module):
    """``[features, unit action]`` -> Q ``[..., ]`` (the trailing 1 squeezed)."""

    def __init__(self, in_dim: int, action_dim: int, hiddens: tuple[int, ...], act: str) -> None:
        super().__init__()
        body, out = mlp(in_dim + action_dim, hiddens, act)
        self.net = nn.Sequential(body, nn.Linear(out, 1))

    def forward(self, features: Tensor, unit_action: Tensor) -> Tensor:
        return self.net(torch.cat([features, unit_action], dim=-1)).squeeze(-1)


def _sub_state(state: Mapping[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {
        k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix) and k != PREV_ACTION
    }


class TD3Networks(nn.Module):
    """Actor and twin critics of recurrent TD3 (see the module docstring for the equations).

    Args:
        obs_space, action_space: gymnasium spaces (the action space a rank-1 float Box).
        core: a name of ``memrl.models.CORES``.
        core_kwargs: the core's hyperparameters (the same for actor and critic cores).
        network: encoder/head settings, keys of :class:`memrl.config.NetworkConfig`;
            ``head_hiddens`` must be non-empty (a Q head linear in the action would give the
            actor a constant gradient); ``shared_core`` and ``log_std_init`` are not used here.
        shared_core: one history for actor and critics (trained by the critic loss only).

    Raises:
        ValueError: bad action space, core, network key, or empty ``head_hiddens``.
    """

    def __init__(
        self,
        obs_space: gym.Space,
        action_space: gym.Space,
        core: str,
        core_kwargs: Mapping[str, Any] | None = None,
        network: Mapping[str, Any] | None = None,
        shared_core: bool = False,
    ) -> None:
        super().__init__()
        space = check_action_space(action_space)
        check_core_name(core)
        cfg = td3_network(network)
        if not isinstance(shared_core, bool):
            raise ValueError(f"td3.shared_core must be a bool, got {shared_core!r}")
        core_kwargs = dict(core_kwargs or {})
        self.action_dim = int(space.shape[0])
        self.shared_core = shared_core
        self.scale = ActionScale(space)
        self.critic_history = History(obs_space, self.action_dim, core, core_kwargs, cfg)
        self.actor_history = (
            self.critic_history
            if shared_core
            else History(obs_space, self.action_dim, core, core_kwargs, cfg)
        )
        feat = self.critic_history.output_dim
        actor_body, actor_out = mlp(feat, cfg.head_hiddens, cfg.activation)
        self.actor_head = nn.Sequential(
            actor_body, nn.Linear(actor_out, self.action_dim), nn.Tanh()
        )
        self.q_heads = nn.ModuleList(
            CriticHead(feat, self.action_dim, cfg.head_hiddens, cfg.activation) for _ in range(2)
        )
        self.stateful = self.critic_history.stateful
        self._prefix = (
            {"actor": "", "critic": ""} if shared_core else {"actor": ACTOR, "critic": CRITIC}
        )

    # --- parameters per loss --------------------------------------------------------------------
    def actor_parameters(self) -> list[nn.Parameter]:
        """What the actor loss trains: the actor head, plus the actor history unless shared."""
        params = list(self.actor_head.parameters())
        if not self.shared_core:
            params += list(self.actor_history.parameters())
        return params

    def critic_parameters(self) -> list[nn.Parameter]:
        """What the critic loss trains: the critic history (shared or not) and the Q heads."""
        return [*self.critic_history.parameters(), *self.q_heads.parameters()]

    # --- state ------------------------------------------------------------------------------
    def _histories(self) -> list[tuple[str, History]]:
        if self.shared_core:
            return [("", self.critic_history)]
        return [(ACTOR, self.actor_history), (CRITIC, self.critic_history)]

    def state_spec(self) -> dict[str, StateSpec]:
        """Flat state spec (see the module docstring); ``{}`` for the memoryless core."""
        if not self.stateful:
            return {}
        spec: dict[str, StateSpec] = {}
        for prefix, history in self._histories():
            spec.update({prefix + k: s for k, s in history.core.state_spec().items()})
        spec[PREV_ACTION] = StateSpec("carry", (self.action_dim,), torch.float32)
        return spec

    def initial_state(
        self, batch_size: int, device: torch.device | str | None = None
    ) -> dict[str, Tensor]:
        """Zero state ``{key: [B, ...]}`` (window masks included); ``{}`` if memoryless."""
        if not self.stateful:
            return {}
        state: dict[str, Tensor] = {}
        for prefix, history in self._histories():
            init = history.core.initial_state(batch_size, device=device)
            state.update({prefix + k: v for k, v in init.items()})
        state[PREV_ACTION] = torch.zeros(batch_size, self.action_dim, device=device)
        return state

    # --- forward passes ---------------------------------------------------------------------
    def _prev_actions(
        self, action: Tensor | None, state: Mapping[str, Tensor], first: Tensor, steps: int
    ) -> Tensor:
        """Unit-scaled ``a_{t-1}`` ``[B, T, A]``: the stored one for t=0, zero where ``first``."""
        if not self.stateful:
            return first.new_zeros(*first.shape, self.action_dim, dtype=torch.float32)
        before = state[PREV_ACTION][:, None].to(torch.float32)
        prev = before if action is None else torch.cat([before, action[:, : steps - 1]], dim=1)
        unit = self.scale.unit(prev)
        return torch.where(first[..., None], torch.zeros_like(unit), unit)

    def histories(
        self,
        obs: Any,
        action: Tensor | None,
        state: Mapping[str, Tensor],
        first: Tensor,
        with_actor: bool = True,
    ) -> tuple[Tensor | None, Tensor, dict[str, Tensor]]:
        """Actor and critic features over a sequence, and the state after it.

        obs: ``[B, T, *obs_shape]``; action: ``[B, T, A]`` env units, the actions taken (for the
        previous-action inputs; None when T == 1: acting); state: flat state before step 0;
        first: ``[B, T]`` bool. Returns (actor features ``[B, T, F]``, critic features
        ``[B, T, F]`` (the same tensor with a shared core), next flat state without
        ``prev_action``). ``with_actor=False`` skips a separate actor history (its features and
        state are then left out: None).
        """
        first = first.to(torch.bool)
        steps = first.shape[1]
        if action is None and steps != 1:
            raise ValueError(f"histories without actions needs T == 1, got T={steps}")
        prev = self._prev_actions(action, state, first, steps)
        outputs: dict[str, Tensor] = {}
        next_state: dict[str, Tensor] = {}
        for prefix, history in self._histories():
            if prefix == ACTOR and not with_actor:
                continue
            sub = _sub_state(state, prefix) if history.stateful else None
            y, out = history(obs, prev, sub, first)
            outputs[prefix] = y
            next_state.update({prefix + k: v for k, v in out.items()})
        if self.shared_core:
            return outputs[""], outputs[""], next_state
        return outputs.get(ACTOR), outputs[CRITIC], next_state

    def actor(self, actor_features: Tensor) -> Tensor:
        """Deterministic action ``[..., A]`` in env units (inside the bounds).

        With a shared core the features are detached: the actor loss never trains the core.
        """
        if self.shared_core:
            actor_features = actor_features.detach()
        return self.scale.env(self.actor_head(actor_features))

    def q_values(self, critic_features: Tensor, action: Tensor) -> tuple[Tensor, Tensor]:
        """(Q1, Q2), each ``[...]``, for env-unit ``action`` ``[..., A]``."""
        unit = self.scale.unit(action)
        q1, q2 = (head(critic_features, unit) for head in self.q_heads)
        return q1, q2
