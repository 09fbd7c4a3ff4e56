"""Actor-critic RLModule (RLlib new API stack) around any memrl memory core.

    obs --encoder--> features --core(state, first)--> y --pi head--> action-dist inputs
                                                        \\-vf head--> value

``model_config`` keys (set by :func:`memrl.rllib.ppo.build_ppo_config`):

* ``core``: a name of ``memrl.models.CORES`` (``"mlp"``: the memoryless baseline, no state);
* ``core_kwargs``: keyword arguments of that core;
* ``model``: encoder/head settings, see :class:`memrl.config.NetworkConfig`;
* ``max_seq_len``: training chunk length (RLlib's key);
* ``kv_cache`` (default True): window cores (trxl, gtrxl, local_xl) act with a K/V cache
  (:mod:`memrl.models.kv_cache`) carried in the env runner's live state beside the window, under
  the keys ``kv_keys``, ``kv_values``, ``kv_version`` (prefixed like the state). Episodes still
  store only the per-step slice (``state_spec`` does not list the cache) and training is
  unchanged; a weight sync makes every cached row stale, and it is rebuilt from the window.
* ``compile_acting`` (default False): the one-step acting forward (encoders, cores, policy head)
  runs through ``torch.compile`` (``compile_backend``, default ``"inductor"``), one graph per
  batch size, compiled on the first acting call of each process (seconds to a minute; inductor
  needs a C++ compiler on the CPU). Window cores then act without the K/V cache (its Python-side
  buffers stay outside a graph): the compiled uncached step is the faster of the two at small
  batches, where the cost is the number of ops, not their size. Weights are graph inputs, so a
  weight sync needs no recompile. If compiling fails, the module logs why and acts eagerly.

Batches of a stateful module carry ``OBS [B, T, ...]``, ``first [B, T]`` bool (True at an
episode's first step; the core resets its state there) and ``STATE_IN`` (the flat state dict at
the chunk start, ``[B, ...]``); a memoryless module sees ``OBS [B, ...]``. The state dict is the
core's, keys unchanged with a shared core; with ``shared_core=False`` the policy and value cores'
keys get the prefixes ``pi/`` and ``vf/``.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.apis.value_function_api import ValueFunctionAPI
from ray.rllib.core.rl_module.torch import TorchRLModule
from torch import Tensor, nn

from memrl.config import NetworkConfig
from memrl.models import StateSpec, check_core_name, make_core
from memrl.models.kv_cache import CACHE_KEYS, act, cache_shapes, supports_kv_cache
from memrl.rllib.encoders import build_encoder, mlp
from memrl.rllib.heads import PolicyHead

# Batch column: [B, T] bool, True where an episode starts.
FIRST = "first"

logger = logging.getLogger(__name__)


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
        self,
        obs: Any,
        state: dict[str, Tensor] | None,
        first: Tensor | None,
        cache: dict[str, Tensor] | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """``cache`` (acting one step with a K/V cache, see :mod:`memrl.models.kv_cache`): the
        returned state then holds the next cache's fields too."""
        x = self.encoder(obs)
        if not self.stateful:
            if x.dim() == 2:  # [B, D]: one step, no time axis
                y, _ = self.core(x.unsqueeze(1), None, None)
                return y.squeeze(1), {}
            return self.core(x, None, None)[0], {}  # [B, T, D]: a sequence (R2D2, TD3)
        if cache is not None:
            y, state, cache = act(self.core, x, state, first, cache)
            return y, {**state, **cache}
        return self.core(x, state, first)


class MemoryActorCritic(TorchRLModule, ValueFunctionAPI):
    """PPO-style actor-critic over a memory core; see the module docstring for the batch layout."""

    def setup(self) -> None:
        self._build()
        if self.inference_only:
            # An env runner's copy only acts: eval mode once here, not a walk over every
            # submodule on every step (see forward_exploration).
            self.eval()

    def _build(self) -> None:
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
        self._compile_acting = bool(cfg.get("compile_acting", False))
        self._compile_backend = str(cfg.get("compile_backend", "inductor"))
        self._compiled_acting: Any = None  # built on the first acting call
        use_cache = bool(cfg.get("kv_cache", True)) and not self._compile_acting
        self._cached = {
            prefix: use_cache and branch.stateful and supports_kv_cache(branch.core)
            for prefix, branch in self._branches()
        }

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

    def acting_state(self, state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``state`` (unbatched numpy) with the acting cache's fields added where missing (all
        stale: rebuilt from the window on first use); unchanged without a cache."""
        out = dict(state)
        for prefix, branch in self._branches():
            if not self._cached[prefix] or prefix + CACHE_KEYS[0] in out:
                continue
            dtype = np.dtype(str(branch.core.state_dtype).removeprefix("torch."))
            for key, shape in cache_shapes(branch.core).items():
                if key == "kv_version":
                    out[prefix + key] = np.array(-1, dtype=np.int64)
                else:
                    out[prefix + key] = np.zeros(shape, dtype=dtype)
        return out

    # --- forward passes ---------------------------------------------------------------------
    def _run_branch(
        self, prefix: str, branch: Branch, batch: dict[str, Any], acting: bool = False
    ) -> tuple[Tensor, dict[str, Tensor]]:
        if not branch.stateful:
            return branch(batch[Columns.OBS], None, None)
        state_in = {
            k[len(prefix) :]: v for k, v in batch[Columns.STATE_IN].items() if k.startswith(prefix)
        }
        cache = None
        if acting and self._cached[prefix] and CACHE_KEYS[0] in state_in:
            cache = {k: state_in.pop(k) for k in CACHE_KEYS}
        else:
            for key in CACHE_KEYS:
                state_in.pop(key, None)
        first = batch.get(FIRST)
        if first is not None:
            first = first.to(torch.bool)
        y, state_out = branch(batch[Columns.OBS], state_in, first, cache)
        return y, {prefix + k: v for k, v in state_out.items()}

    def forward_inference(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        return self._acting(self._forward_inference, batch, kwargs)

    def forward_exploration(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        return self._acting(self._forward_exploration, batch, kwargs)

    def _acting(self, forward: Any, batch: dict[str, Any], kwargs: dict) -> dict[str, Any]:
        # RLlib's TorchRLModule calls eval() and then train() around every acting call: two walks
        # over all submodules per env step, which for a transformer core cost more than its
        # matmuls. Same semantics (eval while acting, the mode restored), switching only when
        # the module is in training mode.
        was_training = self.training
        if was_training:
            self.eval()
        try:
            return forward(batch, **kwargs)
        finally:
            if was_training:
                self.train()

    def _forward_inference(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        with torch.inference_mode():
            return self._forward_acting(batch, **kwargs)

    def _forward_exploration(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        with torch.inference_mode():
            return self._forward_acting(batch, **kwargs)

    def _forward_acting(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        # kwargs (the env runner's ``t``) do not change the forward pass: not traced.
        if self._compile_acting:
            try:  # compiles on the first call (and for each new batch size)
                if self._compiled_acting is None:
                    self._compiled_acting = torch.compile(
                        self._forward_one_step, dynamic=False, backend=self._compile_backend
                    )
                return self._compiled_acting(batch)
            except Exception as err:  # noqa: BLE001 - any compiler failure: act eagerly
                logger.warning(
                    "compile_acting: torch.compile (backend %r) failed, acting eagerly: %s: %s",
                    self._compile_backend,
                    type(err).__name__,
                    err,
                )
                self._compile_acting = False
        return self._forward(batch, acting=True)

    def _forward_one_step(self, batch: dict[str, Any]) -> dict[str, Any]:
        return self._forward(batch, acting=True)

    def _forward(
        self, batch: dict[str, Any], acting: bool = False, **kwargs: Any
    ) -> dict[str, Any]:
        """Inference and exploration: action-dist inputs and the next state (if stateful).
        ``acting``: the env runner's one-step call, where the K/V cache applies."""
        y, state_out = self._run_branch(self._prefixes["pi"], self.pi_branch, batch, acting)
        out: dict[str, Any] = {Columns.ACTION_DIST_INPUTS: self.pi_head(y)}
        if self.vf_branch is not None:
            # The value core's state must advance too, so that training chunks can start from it.
            _, vf_state = self._run_branch(self._prefixes["vf"], self.vf_branch, batch, acting)
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
        """Values ``[B, T]`` (stateful) or ``[B]``; ``embeddings`` from ``_forward_train``.

        Without ``embeddings`` the values are targets (RLlib's GAE connector bootstraps from
        them) and are computed without autograd: the loss passes ``_forward_train``'s
        embeddings, through which gradients flow."""
        if embeddings is None:
            with torch.no_grad():
                if self.vf_branch is None:
                    embeddings, _ = self._run_branch("", self.pi_branch, batch)
                else:
                    embeddings, _ = self._run_branch(self._prefixes["vf"], self.vf_branch, batch)
                return self.vf_head(embeddings).squeeze(-1)
        return self.vf_head(embeddings).squeeze(-1)
