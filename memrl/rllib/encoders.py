"""Observation encoders chosen from the observation space.

Every encoder maps observations with any leading dims (``[B]`` or ``[B, T]``) to features
``[*lead, out_dim]``:

* vector-like spaces (Box of rank <= 2, MultiBinary, Discrete, MultiDiscrete) -> flatten
  (one-hot for the discrete ones) -> MLP;
* images (Box of rank 3, ``H x W x C``; ``C x H x W`` when only the first axis is channel-sized)
  -> conv stack -> linear; uint8 pixels are scaled to [0, 1];
* Dict / Tuple -> one encoder per key, outputs concatenated (keys in sorted order for Dict).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn

from memrl.config import NetworkConfig

_ACT = {"relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU, "silu": nn.SiLU}


def activation(name: str) -> nn.Module:
    return _ACT[name]()


def mlp(in_dim: int, hiddens: tuple[int, ...], act: str) -> tuple[nn.Module, int]:
    """Linear+activation layers of sizes ``hiddens``; returns (module, output size)."""
    layers: list[nn.Module] = []
    for size in hiddens:
        layers += [nn.Linear(in_dim, size), activation(act)]
        in_dim = size
    return nn.Sequential(*layers), in_dim


class Encoder(nn.Module):
    """Base: ``out_dim`` features per observation."""

    out_dim: int


class FlatEncoder(Encoder):
    """Vector-like observation -> float vector -> MLP."""

    def __init__(self, space: gym.Space, cfg: NetworkConfig) -> None:
        super().__init__()
        self.space = space
        if isinstance(space, gym.spaces.Discrete):
            self.event_ndim, in_dim = 0, int(space.n)
        elif isinstance(space, gym.spaces.MultiDiscrete):
            if len(space.nvec.shape) != 1:
                raise ValueError(
                    f"unsupported observation space {space}: MultiDiscrete must be 1-D"
                )
            self.event_ndim, in_dim = 1, int(space.nvec.sum())
            self.register_buffer("nvec", torch.as_tensor(space.nvec, dtype=torch.long))
        else:  # Box of rank <= 2, MultiBinary
            self.event_ndim, in_dim = len(space.shape), int(np.prod(space.shape, dtype=np.int64))
        self.mlp, self.out_dim = mlp(max(in_dim, 1), cfg.encoder_hiddens, cfg.activation)

    def features(self, obs: Tensor) -> Tensor:
        """``obs`` [*lead, *space.shape] -> float [*lead, in_dim]."""
        lead = obs.shape[: obs.dim() - self.event_ndim]
        if isinstance(self.space, gym.spaces.Discrete):
            index = obs.long() - int(self.space.start)
            return nn.functional.one_hot(index, int(self.space.n)).float()
        if isinstance(self.space, gym.spaces.MultiDiscrete):
            parts = [
                nn.functional.one_hot(obs[..., i].long(), int(n)).float()
                for i, n in enumerate(self.nvec.tolist())
            ]
            return torch.cat(parts, dim=-1)
        return obs.reshape(*lead, -1).float()

    def forward(self, obs: Tensor) -> Tensor:
        return self.mlp(self.features(obs))


class CNNEncoder(Encoder):
    """Image ``[*lead, H, W, C]`` (or ``C, H, W``) -> conv stack -> linear ``cnn_out``."""

    def __init__(self, space: gym.spaces.Box, cfg: NetworkConfig) -> None:
        super().__init__()
        height, width, channels = space.shape
        # Images are HWC (Memory Gym, Memory Maze, Atari via gymnasium); accept CHW when only the
        # first axis looks like a channel axis.
        self.channels_first = channels > 4 and height <= 4
        if self.channels_first:
            channels, height, width = space.shape
        self.scale = 1.0 / 255.0 if space.dtype == np.uint8 else 1.0
        layers: list[nn.Module] = []
        in_ch = channels
        for out_ch, kernel, stride in cfg.cnn_filters:
            layers += [nn.Conv2d(in_ch, out_ch, kernel, stride), activation(cfg.activation)]
            in_ch = out_ch
        self.conv = nn.Sequential(*layers, nn.Flatten())
        with torch.no_grad():
            try:
                flat = self.conv(torch.zeros(1, channels, height, width)).shape[-1]
            except RuntimeError as err:
                raise ValueError(
                    f"model.cnn_filters {cfg.cnn_filters} shrink an observation of shape "
                    f"{space.shape} below one pixel"
                ) from err
        self.head = nn.Sequential(nn.Linear(flat, cfg.cnn_out), activation(cfg.activation))
        self.out_dim = cfg.cnn_out

    def forward(self, obs: Tensor) -> Tensor:
        lead = obs.shape[:-3]
        x = obs.reshape(-1, *obs.shape[-3:]).float() * self.scale
        if not self.channels_first:
            x = x.permute(0, 3, 1, 2)  # NHWC -> NCHW
        return self.head(self.conv(x)).reshape(*lead, self.out_dim)


class CompositeEncoder(Encoder):
    """Dict / Tuple: one encoder per key; features concatenated in key order."""

    def __init__(self, space: gym.spaces.Dict | gym.spaces.Tuple, cfg: NetworkConfig) -> None:
        super().__init__()
        if isinstance(space, gym.spaces.Dict):
            self.keys = sorted(space.spaces)
            subspaces = [space.spaces[k] for k in self.keys]
        else:
            self.keys = list(range(len(space.spaces)))
            subspaces = list(space.spaces)
        if not subspaces:
            raise ValueError(f"unsupported observation space {space}: it has no sub-spaces")
        self.parts = nn.ModuleList(build_encoder(s, cfg) for s in subspaces)
        self.out_dim = sum(p.out_dim for p in self.parts)

    def forward(self, obs: dict | tuple | list) -> Tensor:
        pairs = zip(self.keys, self.parts, strict=True)
        return torch.cat([part(obs[key]) for key, part in pairs], dim=-1)


def build_encoder(space: gym.Space, cfg: NetworkConfig) -> Encoder:
    """The encoder for ``space``. Raises ValueError naming the space if it is unsupported."""
    if isinstance(space, gym.spaces.Dict | gym.spaces.Tuple):
        return CompositeEncoder(space, cfg)
    if isinstance(space, gym.spaces.Box) and len(space.shape) == 3:
        return CNNEncoder(space, cfg)
    if isinstance(space, gym.spaces.Box) and len(space.shape) <= 2:
        return FlatEncoder(space, cfg)
    if isinstance(space, gym.spaces.MultiBinary | gym.spaces.Discrete | gym.spaces.MultiDiscrete):
        return FlatEncoder(space, cfg)
    raise ValueError(
        f"unsupported observation space {space}; supported: Box of rank 0-2 (vectors) or 3 "
        "(images HxWxC), MultiBinary, Discrete, MultiDiscrete (1-D), and Dict/Tuple of these"
    )
