"""R2D2 learner: stored state + burn-in, n-step double Q with value rescaling, target network."""

from __future__ import annotations

from typing import Any

import torch
from ray.rllib.core.columns import Columns
from torch import Tensor

from memrl.config import R2D2Hyperparameters
from memrl.rllib.module import FIRST
from memrl.rllib.offpolicy import LearnOutput, OffPolicyLearner, SequenceTensors
from memrl.rllib.r2d2.targets import n_step_targets


def _inputs(batch: SequenceTensors, lo: int, hi: int, state: dict | None) -> dict[str, Any]:
    return {Columns.OBS: batch.obs[:, lo:hi], FIRST: batch.first[:, lo:hi], Columns.STATE_IN: state}


def unroll(
    module: Any, network: str, batch: SequenceTensors, state: dict | None, burn_in: int
) -> Tensor:
    """Q-values ``[B, T, A]`` of the training steps: the burn-in runs without gradient from
    ``state`` (the stored one, or None for the core's zero state), the rest from there."""
    if not module.stateful:
        q, _ = getattr(module, network)(batch.obs[:, burn_in:], None, None)
        return q
    if state is None:
        state = module.q.branch.core.initial_state(len(batch), device=batch.obs.device)
    if burn_in > 0:
        with torch.no_grad():
            _, state = module.q_values(_inputs(batch, 0, burn_in, state), network)
        state = {k: v.detach() for k, v in state.items()}
    q, _ = module.q_values(_inputs(batch, burn_in, batch.obs.shape[1], state), network)
    return q


def r2d2_loss(module: Any, batch: SequenceTensors, cfg: R2D2Hyperparameters) -> dict[str, Tensor]:
    """Loss and diagnostics of one R2D2 update (no optimizer step).

    cfg: reads gamma, n_step, value_rescaling, rescale_eps, double_q. Returns ``loss`` (scalar),
    ``td_abs`` ``[B, T]`` (detached), ``valid`` ``[B, T]`` bool, ``q_mean``.
    """
    burn_in = batch.burn_in
    q = unroll(module, "q", batch, batch.state, burn_in)  # [B, T, A]
    with torch.no_grad():
        q_target = unroll(module, "target", batch, batch.state, burn_in)
        select = q if cfg.double_q else q_target
        best = select.argmax(dim=-1, keepdim=True)
        bootstrap = q_target.gather(-1, best).squeeze(-1)
        target, valid = n_step_targets(
            batch.reward[:, burn_in:],
            batch.terminated[:, burn_in:],
            batch.mask[:, burn_in:],
            bootstrap,
            gamma=cfg.gamma,
            n=cfg.n_step,
            rescale=cfg.value_rescaling,
            rescale_eps=cfg.rescale_eps,
        )
    action = batch.action[:, burn_in:].long()
    q_taken = q.gather(-1, action.unsqueeze(-1)).squeeze(-1)
    td = torch.where(valid, target - q_taken, torch.zeros_like(q_taken))
    per_sequence = 0.5 * td.square().sum(dim=1) / valid.sum(dim=1).clamp(min=1)
    loss = (batch.weights * per_sequence).mean()
    return {
        "loss": loss,
        "td_abs": td.detach().abs(),
        "valid": valid,
        "q_mean": q_taken.detach()[valid].mean() if valid.any() else torch.zeros(()),
    }


def delta_q(module: Any, batch: SequenceTensors) -> tuple[float, float]:
    """R2D2's Q-value discrepancy at the first and last training step of the sequences.

    ``ΔQ = ||q(ŝ_t) - q(s_t)||_2 / |max_{a,j} q(s_t)_{a_j}|`` with ``ŝ`` the state unrolled
    from the *stored* state (computed by older parameters when acting) and ``s`` the state
    recomputed by the current parameters from a zero state at the sequence start, both burnt in
    over the same steps. Averaged over sequences whose step is valid; NaN if none is.
    """
    if not module.stateful:
        return 0.0, 0.0
    with torch.no_grad():
        stored = unroll(module, "q", batch, batch.state, batch.burn_in)
        fresh = unroll(module, "q", batch, None, batch.burn_in)
    mask = batch.mask[:, batch.burn_in :]
    out = []
    last = mask.long().sum(dim=1) - 1
    for index in (torch.zeros_like(last), last):
        ok = index >= 0
        if not ok.any():
            out.append(float("nan"))
            continue
        rows = torch.nonzero(ok).squeeze(1)
        a = stored[rows, index[rows]]
        b = fresh[rows, index[rows]]
        norm = (a - b).norm(dim=-1)
        scale = b.abs().max().clamp(min=1e-6)
        out.append(float((norm / scale).mean()))
    return out[0], out[1]


class R2D2Learner(OffPolicyLearner):
    """Adam (``lr``, ``adam_eps``), target copy every ``target_update_period`` updates."""

    def configure_optimizers_for_module(self, module_id: str, config: Any = None) -> None:
        module = self._module[module_id].unwrapped()
        params = list(module.q.parameters())
        optimizer = torch.optim.Adam(params, lr=config.lr, eps=config.r2d2.adam_eps)
        self.register_optimizer(
            module_id=module_id, optimizer=optimizer, params=params, lr_or_lr_schedule=config.lr
        )

    def learn_on_batch(self, batch: SequenceTensors) -> LearnOutput:
        cfg = self.config.r2d2
        module = self.rl_module
        measure = cfg.delta_q_every > 0 and self.updates % cfg.delta_q_every == 0
        if measure:
            self._delta_q = delta_q(module, batch)
        # The latest measurement is reported with every update, so that each iteration's
        # results hold it even when no update of that iteration measured.
        dq = getattr(self, "_delta_q", None)
        out = r2d2_loss(module, batch, cfg)
        grad_norm = self.optimizer_step(out["loss"], grad_clip=cfg.grad_clip)
        if (self.updates + 1) % cfg.target_update_period == 0:
            module.sync_target()
        metrics = {
            "q_loss": out["loss"].detach(),
            "q_mean": out["q_mean"],
            "td_error_abs": out["td_abs"][out["valid"]].mean() if out["valid"].any() else 0.0,
            "grad_norm": grad_norm,
            "importance_weight_mean": batch.weights.mean(),
        }
        if dq is not None:
            metrics["delta_q_first"], metrics["delta_q_last"] = dq
        return LearnOutput(metrics=metrics, td_abs=out["td_abs"], td_mask=out["valid"])
