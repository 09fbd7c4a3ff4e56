"""Actor-critic RLModule (RLlib new API stack) around any memrl memory core.

    obs --encoder--> features --core(state, first)--> y --pi head--> action-dist inputs
                                                        \\-vf head--> value

``model_config`` keys (set by :func:`memrl.rllib.ppo.build_ppo_config`):

* ``core``: a name of ``memrl.models.CORES`` (``"mlp"``: the memoryless baseline, no state);
* ``core_kwargs``: keyword arguments of that core;
* ``model``: encoder/head settings, see :class:`memrl.config.NetworkConfig`;
* ``max_seq_len``: training chunk length (RLlib's key).

Batches of a stateful module carry ``OBS [B, T, ...]``, ``first [B, T]`` bool (True at an
episode's first step; the core resets its state there) and ``STATE_IN`` (the flat state dict at
the chunk start, ``[B, ...]``); a memoryless module sees ``OBS [B, ...]``. The state dict is the
core's, keys unchanged with a shared core; with ``shared_core=False`` the policy and value cores'
keys get the prefixes ``pi/`` and ``vf/``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.apis.value_function_api import ValueFunctionAPI
from ray.rllib.core.rl_module.torch import TorchRLModule
from torch import Tensor, nn

from memrl.config import NetworkConfig
from memrl.models import StateSpec, check_core_name, make_core
from memrl.rllib.encoders import build_encoder, mlp
from memrl.rllib.heads import PolicyHead

# Batch column: [B, T] bool, True where an episode starts.
FIRST = "first"


class Branch(nn.Module):
    """Encoder + core: observations -> features ``[*lead, output_dim]`` (and the next state)."""

    def __init__(self, obs_space, core: str, core_kwargs: dict, cfg: NetworkConfig) -> None:
        super().__init__()
        self.encoder = build_encoder(obs_space, cfg)
        self.core = make_core(core, self.encoder.out_dim, **core_kwargs)
        # RLlib gives a module without state batches without a time axis.
        self.stateful = bool(self.core.state_spec())
        self.output_dim = self.core.output_dim

    def forward(
        self, obs: Any, state: dict[str, Tensor] | None, first: Tensor | None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        x = self.encoder(obs)
        if self.stateful:
            return self.core(x, state, first)
        y, _ = self.core(x.unsqueeze(1), None, None)
        return y.squeeze(1), {}


class MemoryActorCritic(TorchRLModule, ValueFunctionAPI):
    """PPO-style actor-critic over a memory core; see the module docstring for the batch layout."""

    def setup(self) -> None:
        cfg = self.model_config  # set whole by build_ppo_config; no defaults here
        core = cfg.get("core")
        check_core_name(core, "model_config['core']")
        core_kwargs = dict(cfg["core_kwargs"])
        self.model_cfg = NetworkConfig.from_dict(cfg["model"])
        act = self.model_cfg.activation
        self.pi_branch = Branch(self.observation_space, core, core_kwargs, self.model_cfg)
        self.vf_branch = (
            None
            if self.model_cfg.shared_core
            else Branch(self.observation_space, core, core_kwargs, self.model_cfg)
        )
        feat = self.pi_branch.output_dim
        pi_mlp, pi_dim = mlp(feat, self.model_cfg.head_hiddens, act)
        self.pi_head = nn.Sequential(
            pi_mlp, PolicyHead(pi_dim, self.action_space, self.model_cfg.log_std_init)
        )
        vf_mlp, vf_dim = mlp(feat, self.model_cfg.head_hiddens, act)
        self.vf_head = nn.Sequential(vf_mlp, nn.Linear(vf_dim, 1))
        self.action_dist_cls = self.pi_head[-1].dist_cls
        self._prefixes = (
            {"pi": "", "vf": None} if self.vf_branch is None else {"pi": "pi/", "vf": "vf/"}
        )

    # --- state ------------------------------------------------------------------------------
    def _branches(self) -> list[tuple[str, Branch]]:
        out = [(self._prefixes["pi"], self.pi_branch)]
        if self.vf_branch is not None:
            out.append((self._prefixes["vf"], self.vf_branch))
        return out

    def state_spec(self) -> dict[str, StateSpec]:
        """The flat state spec of all cores (keys prefixed as in the module docstring)."""
        spec: dict[str, StateSpec] = {}
        for prefix, branch in self._branches():
            spec.update({prefix + k: s for k, s in branch.core.state_spec().items()})
        return spec

    def get_initial_state(self) -> dict[str, np.ndarray]:
        """Unbatched zero state (numpy); ``{}`` for a core without state."""
        state: dict[str, np.ndarray] = {}
        for prefix, branch in self._branches():
            init = branch.core.initial_state(1)
            state.update({prefix + k: v[0].cpu().numpy() for k, v in init.items()})
        return state

    # --- forward passes ---------------------------------------------------------------------
    def _run_branch(
        self, prefix: str, branch: Branch, batch: dict[str, Any]
    ) -> tuple[Tensor, dict[str, Tensor]]:
        if not branch.stateful:
            return branch(batch[Columns.OBS], None, None)
        state_in = {
            k[len(prefix) :]: v for k, v in batch[Columns.STATE_IN].items() if k.startswith(prefix)
        }
        first = batch.get(FIRST)
        if first is not None:
            first = first.to(torch.bool)
        y, state_out = branch(batch[Columns.OBS], state_in, first)
        return y, {prefix + k: v for k, v in state_out.items()}

    def _forward(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        """Inference and exploration: action-dist inputs and the next state (if stateful)."""
        y, state_out = self._run_branch(self._prefixes["pi"], self.pi_branch, batch)
        out: dict[str, Any] = {Columns.ACTION_DIST_INPUTS: self.pi_head(y)}
        if self.vf_branch is not None:
            # The value core's state must advance too, so that training chunks can start from it.
            _, vf_state = self._run_branch(self._prefixes["vf"], self.vf_branch, batch)
            state_out.update(vf_state)
        if state_out:
            out[Columns.STATE_OUT] = state_out
        return out

    def _forward_train(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        """Training: action-dist inputs, and the value features as EMBEDDINGS (no second pass)."""
        y, _ = self._run_branch(self._prefixes["pi"], self.pi_branch, batch)
        out: dict[str, Any] = {Columns.ACTION_DIST_INPUTS: self.pi_head(y)}
        if self.vf_branch is None:
            out[Columns.EMBEDDINGS] = y
        else:
            out[Columns.EMBEDDINGS], _ = self._run_branch(
                self._prefixes["vf"], self.vf_branch, batch
            )
        return out

    def compute_values(self, batch: dict[str, Any], embeddings: Any = None) -> Tensor:
        """Values ``[B, T]`` (stateful) or ``[B]``; ``embeddings`` from ``_forward_train``."""
        if embeddings is None:
            if self.vf_branch is None:
                embeddings, _ = self._run_branch("", self.pi_branch, batch)
            else:
                embeddings, _ = self._run_branch(self._prefixes["vf"], self.vf_branch, batch)
        return self.vf_head(embeddings).squeeze(-1)
