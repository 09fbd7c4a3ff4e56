"""ReLiT's matrix memory read out chunk by chunk, without materialising ``C`` for every step.

The scan (``linear_scan``) of ``C_t`` [B, T, H, d_h, F] materialises the memory of every
step, and its decay, update and scan intermediates, each ``T * d_h * F`` per head: at the
authors' sizes the training cost is dominated by moving those tensors. Only the readout
``C_t phi(q_t)`` [B, T, H, d_h] is needed, so here ``C`` is carried step to step inside a chunk
and read out at once; the sequence is cut into chunks of ``chunk`` steps, each run under
activation checkpointing when gradients are needed, so autograd keeps only the memory at chunk
boundaries (recomputing a chunk's steps in the backward pass).

Why steps and not matmuls inside a chunk (flash-linear-attention's chunk form): that form needs
a decay that factors over the two axes of ``C`` (``a_t (x) b_t``), which ``outer_decay`` has
but ReLiT's default ``projected_sigmoid`` rule, ``C_t = C_{t-1} (1 - beta_t (x) gamma_t) + ...``,
does not: ``prod_j (1 - beta_j[d] gamma_j[f])`` is no product of a d-part and an f-part, so
there is no exact intra-chunk matmul form; both rules use the step form here. Episode starts
(``keep = 0``) zero the carried memory at that step, inside a chunk as at its start. The result
equals the scan's to float rounding (same operations per step, summed in another order).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint


def _chunk_steps(
    rule: str,
    memory: Tensor,
    key: Tensor,
    value: Tensor,
    beta: Tensor,
    gamma: Tensor,
    keep: Tensor,
    query: Tensor,
) -> tuple[Tensor, Tensor]:
    """Steps of one chunk: (readouts [B, C, H, d_h], memory after the chunk [B, H, d_h, F])."""
    outs = []
    # Which steps start an episode in some row, found once (on the CPU; a CUDA device would have
    # to sync): other steps skip the full-size multiply by keep.
    cuts = None if keep.is_cuda else (keep == 0).any(dim=0).tolist()
    for t in range(key.shape[1]):
        if cuts is None or cuts[t]:
            memory = memory * keep[:, t, None, None, None]  # [B, 1, 1, 1]: 0 at an episode start
        kept = memory
        if rule == "projected_sigmoid":
            write = beta[:, t, :, :, None] * gamma[:, t, :, None, :]  # beta (x) gamma
            update = value[:, t, :, :, None] * key[:, t, :, None, :]  # v (x) phi(k)
            memory = torch.addcmul(kept, write, update - kept)  # C (1 - w) + U w
        else:  # outer_decay
            decay = (1 - beta[:, t, :, :, None]) * (1 - gamma[:, t, :, None, :])
            update = (beta[:, t] * value[:, t])[..., None] * (gamma[:, t] * key[:, t])[..., None, :]
            memory = torch.addcmul(update, decay, kept)
        # C phi(q) as a product and a sum: a batched matrix-vector bmm ran ~1.8x slower on the
        # CPU at [64, 4, 64, 128] (forward; backward ~1.1-1.5x).
        outs.append((memory * query[:, t, :, None, :].to(memory.dtype)).sum(-1))
    return torch.stack(outs, dim=1), memory


def chunked_readout(
    rule: str,
    key: Tensor,
    value: Tensor,
    beta: Tensor,
    gamma: Tensor,
    keep: Tensor,
    query: Tensor,
    initial: Tensor,
    chunk: int,
) -> tuple[Tensor, Tensor]:
    """``(C_t phi(q_t) for every t [B, T, H, d_h], C_T [B, H, d_h, F])`` of ReLiT's memory.

    key phi(k), gamma, query phi(q): [B, T, H, F]; value, beta: [B, T, H, d_h]; keep [B, T]
    (0 where an episode starts); initial C_0 [B, H, d_h, F]; ``rule`` one of ReLiT's
    ``UPDATE_RULES``; ``chunk`` >= 1 steps per checkpointed chunk. Raises ValueError on a bad
    chunk size.
    """
    if not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk must be a positive int, got {chunk!r}")
    memory = initial
    outs = []
    checkpointed = torch.is_grad_enabled()
    for start in range(0, key.shape[1], chunk):
        piece = slice(start, start + chunk)
        args = (memory, key[:, piece], value[:, piece], beta[:, piece], gamma[:, piece])
        args += (keep[:, piece], query[:, piece])
        if checkpointed:
            out, memory = checkpoint(_chunk_steps, rule, *args, use_reentrant=False)
        else:
            out, memory = _chunk_steps(rule, *args)
        outs.append(out)
    return torch.cat(outs, dim=1), memory
