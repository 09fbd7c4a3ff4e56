"""The learner half of recurrent off-policy training: sample sequences, update, re-prioritise.

:class:`OffPolicyLearner` is an RLlib ``TorchLearner`` (module building, device placement,
optimizers and their state in checkpoints, weights for the env runners all stay RLlib's), but its
data does not come through ``Learner.update``: the algorithm calls :meth:`train_from_replay`, which
pulls :class:`memrl.replay.SequenceBatch` es from the shards with a
:class:`memrl.replay.distributed.PrefetchSampler`, turns each into a :class:`SequenceTensors` on the
learner's device, and hands it to the subclass's :meth:`learn_on_batch` hook.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.core.learner.torch.torch_learner import TorchLearner
from torch import Tensor

from memrl.replay import SequenceBatch

log = logging.getLogger(__name__)


@dataclass
class SequenceTensors:
    """A :class:`SequenceBatch` as tensors on the learner's device (``L = burn_in + T``).

    obs ``[B, L, *obs_shape]`` (stored dtype), action ``[B, L, *action_shape]``, reward
    ``[B, L]`` float32, terminated / truncated / first / mask ``[B, L]`` bool, state ``{key:
    [B, ...]}`` (the core's layout, window masks bool), weights ``[B]`` float32 (importance
    weights), burn_in: the number of leading steps used only to warm the state up.
    ``source`` is the numpy batch it came from (for priority updates and diagnostics).
    """

    obs: Tensor
    action: Tensor
    reward: Tensor
    terminated: Tensor
    truncated: Tensor
    first: Tensor
    mask: Tensor
    state: dict[str, Tensor]
    weights: Tensor
    burn_in: int
    source: SequenceBatch | None = None

    @staticmethod
    def from_batch(batch: SequenceBatch, device: torch.device | str = "cpu") -> SequenceTensors:
        def put(x: np.ndarray) -> Tensor:
            return torch.as_tensor(np.ascontiguousarray(x), device=device)

        return SequenceTensors(
            obs=put(batch.obs),
            action=put(batch.action),
            reward=put(batch.reward).float(),
            terminated=put(batch.terminated).bool(),
            truncated=put(batch.truncated).bool(),
            first=put(batch.first).bool(),
            mask=put(batch.mask).bool(),
            state={k: put(v) for k, v in batch.state.items()},
            # PER weights normalised by the batch's largest (Schaul et al. 2016): the replay
            # normalises by the largest possible weight, which one floored priority makes huge.
            weights=put(
                batch.weights / max(float(np.max(batch.weights, initial=0.0)), 1e-12)
            ).float(),
            burn_in=int(batch.burn_in),
            source=batch,
        )

    def __len__(self) -> int:
        return int(self.mask.shape[0])


@dataclass
class LearnOutput:
    """What :meth:`OffPolicyLearner.learn_on_batch` returns.

    metrics: scalars to report (floats or 0-d tensors) under ``learners/<module>/<name>``.
    Priorities for the sampled sequences, one of:

    * ``td_abs`` ``[B, T]`` absolute TD errors of the training steps (the last ``T`` of the
      sequence), with ``td_mask`` ``[B, T]`` bool of the steps that count (default: the batch's
      ``mask`` over the last ``T`` steps); the priority is R2D2's ``eta * max + (1 - eta) * mean``;
    * ``priority`` ``[B]``: the priorities themselves;
    * neither: priorities stay as they are (e.g. uniform replay).
    """

    metrics: dict[str, Any] = field(default_factory=dict)
    td_abs: Tensor | np.ndarray | None = None
    td_mask: Tensor | np.ndarray | None = None
    priority: Tensor | np.ndarray | None = None


def _numpy(x: Tensor | np.ndarray) -> np.ndarray:
    if isinstance(x, Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


class OffPolicyLearner(TorchLearner):
    """Base learner of memrl's off-policy algorithms; subclasses implement :meth:`learn_on_batch`.

    Subclasses register their optimizers in ``configure_optimizers_for_module`` (RLlib's API: one
    Adam over all parameters with ``config.lr`` by default) and may use :meth:`optimizer_step`.
    ``self.updates`` counts calls of ``learn_on_batch`` (restored with the learner's state).
    """

    def build(self) -> None:
        super().build()
        self._sampler = None
        self.updates = 0

    # --- the hook -----------------------------------------------------------------------------
    def learn_on_batch(self, batch: SequenceTensors) -> LearnOutput:
        """One update on ``batch`` (sequences of ``burn_in + T`` steps); returns metrics and
        the TD errors or priorities of its sequences. Override in a subclass."""
        raise NotImplementedError

    def compute_loss_for_module(self, *, module_id, config, batch, fwd_out):  # noqa: ANN001
        raise NotImplementedError(
            f"{type(self).__name__} learns from sequence replay via train_from_replay(), "
            "not from Learner.update()"
        )

    # --- helpers for subclasses ---------------------------------------------------------------
    @property
    def rl_module(self) -> Any:
        """The (unwrapped) RLModule being trained."""
        return self.module[DEFAULT_MODULE_ID].unwrapped()

    def optimizer_step(
        self,
        loss: Tensor,
        optimizer_name: str = "default_optimizer",
        grad_clip: float | None = None,
    ) -> float:
        """Backprop ``loss`` and step the named optimizer; returns the global grad norm.

        Gradients of the optimizer's parameters are zeroed first; ``grad_clip`` clips their
        global norm.
        """
        optimizer = self.get_optimizer(DEFAULT_MODULE_ID, optimizer_name)
        params = [p for group in optimizer.param_groups for p in group["params"]]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grads = [p for p in params if p.grad is not None]
        if grad_clip is not None:
            norm = torch.nn.utils.clip_grad_norm_(grads, grad_clip)
        else:
            norm = (
                torch.linalg.vector_norm(
                    torch.stack([torch.linalg.vector_norm(p.grad) for p in grads])
                )
                if grads
                else torch.zeros(())
            )
        optimizer.step()
        return float(norm)

    # --- replay -------------------------------------------------------------------------------
    def attach_replay(self, shards: list, supervisor: Any = None, **sampler_kwargs: Any) -> None:
        """Sample from ``shards`` from now on (``sampler_kwargs``: PrefetchSampler's: batch_size,
        prefetch, beta, prioritized, eta, seed). Drops rounds prefetched from a previous attach.

        supervisor: the driver's ``ShardSupervisor`` when this learner runs in the driver: its
        sampler restores a dead shard and carries on. Without it (a remote learner) a dead shard
        ends the current :meth:`train_from_replay` early and the algorithm attaches the
        restored shards.
        """
        from memrl.replay.distributed import PrefetchSampler, ReplayShardError

        if self._sampler is not None:
            with contextlib.suppress(ReplayShardError):  # the old shards may be gone
                self._sampler.close()
        if supervisor is not None:
            self._sampler = supervisor.sampler(**sampler_kwargs)
        else:
            self._sampler = PrefetchSampler(shards, **sampler_kwargs)

    @property
    def replay_attached(self) -> bool:
        """Whether a sampler is attached (a dead shard detaches a remote learner's)."""
        return self._sampler is not None

    def train_from_replay(self, num_updates: int) -> dict[str, Any]:
        """Run ``num_updates`` updates on sampled sequences; returns the reduced metrics.

        Reports, besides the hook's metrics: ``num_updates`` (lifetime), ``replay_wait_s`` and
        ``learner_idle_fraction`` (share of this call spent waiting for samples). A shard that
        died under a plain ``PrefetchSampler`` stops the call early (``replay_shard_errors``
        counts it) and detaches the sampler until the algorithm attaches the restored shards.
        Raises RuntimeError before ``attach_replay``.
        """
        from memrl.replay.distributed import ReplayShardError

        if self._sampler is None:
            raise RuntimeError("attach_replay() must be called before train_from_replay()")
        sampler = self._sampler
        began, waited_before = time.perf_counter(), sampler.wait_s
        mid = DEFAULT_MODULE_ID
        errors = 0
        for _ in range(num_updates):
            try:
                batch = sampler.next()
            except ReplayShardError as err:
                log.warning("learner: %s; waiting for the algorithm to restore it", err)
                errors, self._sampler = 1, None
                break
            out = self.learn_on_batch(SequenceTensors.from_batch(batch, self._device))
            self.updates += 1
            try:
                if out.priority is not None:
                    sampler.update_priorities(batch, priority=_numpy(out.priority))
                elif out.td_abs is not None:
                    td_mask = None if out.td_mask is None else _numpy(out.td_mask).astype(bool)
                    sampler.update_priorities(batch, _numpy(out.td_abs), td_mask)
            except ReplayShardError as err:
                log.warning("learner: %s; waiting for the algorithm to restore it", err)
                errors, self._sampler = 1, None
            for key, value in out.metrics.items():
                value = float(value.detach()) if isinstance(value, Tensor) else float(value)
                self.metrics.log_value((mid, key), value, window=num_updates)
            if self._sampler is None:
                break
        elapsed = time.perf_counter() - began
        waited = sampler.wait_s - waited_before
        self.metrics.log_value((mid, "num_updates"), self.updates, reduce="max", window=1)
        self.metrics.log_value((mid, "replay_wait_s"), waited, window=1)
        self.metrics.log_value(
            (mid, "learner_idle_fraction"), waited / max(elapsed, 1e-9), window=1
        )
        self.metrics.log_value((mid, "replay_shard_errors"), errors, reduce="sum")
        return self.metrics.reduce()

    def detach_replay(self) -> None:
        """Flush priority updates and drop prefetched rounds (before the shards go away)."""
        from memrl.replay.distributed import ReplayShardError

        if self._sampler is not None:
            with contextlib.suppress(ReplayShardError):  # a dead shard's updates are gone
                self._sampler.close()
            self._sampler = None

    # --- state --------------------------------------------------------------------------------
    def get_state(self, *args: Any, **kwargs: Any) -> dict:
        state = super().get_state(*args, **kwargs)
        state["memrl_updates"] = self.updates
        return state

    def set_state(self, state: dict) -> None:
        super().set_state(state)
        self.updates = int(state.get("memrl_updates", self.updates))
