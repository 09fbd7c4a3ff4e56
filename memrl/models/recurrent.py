"""GRU and LSTM cores on torch's fused (cuDNN / oneDNN) kernels.

The fused kernels cannot reset the hidden state mid-sequence, so the sequence is cut at every
step where any row starts an episode; each piece runs as one fused call after zeroing the rows
that start there. With rare episode starts that is a handful of calls per sequence.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from memrl.models.base import MemoryCore, State, StateSpec


def episode_cuts(first: Tensor) -> list[int]:
    """Start indices of the pieces [0, ..., T) between steps where any row has ``first``."""
    starts = torch.nonzero(first.any(dim=0)).flatten().tolist()
    return sorted({0, *starts})


class _FusedRNNCore(MemoryCore):
    rnn_cls: type[nn.RNNBase]
    state_keys: tuple[str, ...]

    def __init__(self, input_dim: int, *, hidden_size: int = 256, num_layers: int = 1) -> None:
        super().__init__(input_dim)
        if hidden_size <= 0 or num_layers <= 0:
            raise ValueError(
                f"hidden_size and num_layers must be positive, got {hidden_size}, {num_layers}"
            )
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.rnn = self.rnn_cls(input_dim, hidden_size, num_layers=num_layers, batch_first=True)
        self.output_dim = hidden_size

    def state_spec(self) -> dict[str, StateSpec]:
        spec = StateSpec("carry", (self.num_layers, self.hidden_size), self.state_dtype)
        return {key: spec for key in self.state_keys}

    def _forward(self, x: Tensor, state: State, first: Tensor) -> tuple[Tensor, State]:
        steps = x.shape[1]
        # torch wants [layers, B, H]; memrl keeps batch first everywhere.
        hidden = [state[k].transpose(0, 1).contiguous() for k in self.state_keys]
        cuts = episode_cuts(first)
        outputs = []
        for start, end in zip(cuts, [*cuts[1:], steps], strict=False):
            keep = (~first[:, start]).to(x.dtype).view(1, -1, 1)
            hidden = [h * keep for h in hidden]
            out, new = self._run_rnn(x[:, start:end], hidden)
            hidden = [new] if isinstance(new, Tensor) else list(new)
            outputs.append(out)
        y = torch.cat(outputs, dim=1)
        return y, {k: h.transpose(0, 1) for k, h in zip(self.state_keys, hidden, strict=False)}

    def _run_rnn(self, x: Tensor, hidden: list[Tensor]) -> tuple[Tensor, Tensor | tuple]:
        h = hidden[0] if len(hidden) == 1 else tuple(hidden)
        if x.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
            # CPU autocast runs LSTM/GRU in bf16 through oneDNN, which has no bf16 LSTM primitive
            # on CPUs without native bf16 support ("could not create a primitive descriptor"):
            # run the fused kernel in the parameters' dtype there instead.
            dtype = self.rnn.weight_ih_l0.dtype
            with torch.autocast("cpu", enabled=False):
                cast = h.to(dtype) if isinstance(h, Tensor) else tuple(t.to(dtype) for t in h)
                return self.rnn(x.to(dtype), cast)
        return self.rnn(x, h)


class GRUCore(_FusedRNNCore):
    """Multi-layer GRU (Cho et al. 2014); state {"h": [layers, hidden]}."""

    name = "gru"
    rnn_cls = nn.GRU
    state_keys = ("h",)


class LSTMCore(_FusedRNNCore):
    """Multi-layer LSTM (Hochreiter & Schmidhuber 1997); state {"h", "c": [layers, hidden]}."""

    name = "lstm"
    rnn_cls = nn.LSTM
    state_keys = ("h", "c")
