"""Gymnasium spaces to and from Minari's JSON form (``{"type": "Box", "dtype", "shape", "low",
"high"}``, ``{"type": "Discrete", "dtype": "int64", "start", "n"}``).

``{"type": "MultiBinary", "dtype": "int8", "n": int or shape}`` (T-Maze's observations) is
memrl's own extension: Minari 0.5 has no MultiBinary, so ``minari`` cannot load such a dataset.
"""

from __future__ import annotations

import json
from typing import Any

import gymnasium as gym
import numpy as np

SUPPORTED = ("Box", "Discrete", "MultiBinary")


def serialize_space(space: gym.Space) -> str:
    """JSON string of a Box, Discrete or MultiBinary; ValueError for any other space."""
    if isinstance(space, gym.spaces.Box):
        data: dict[str, Any] = {
            "type": "Box",
            "dtype": str(space.dtype),
            "shape": list(space.shape),
            "low": space.low.tolist(),
            "high": space.high.tolist(),
        }
    elif isinstance(space, gym.spaces.Discrete):
        data = {"type": "Discrete", "dtype": "int64", "start": int(space.start), "n": int(space.n)}
    elif isinstance(space, gym.spaces.MultiBinary):
        # n as gymnasium holds it (an int or a shape): MultiBinary(3) != MultiBinary([3])
        n = int(space.n) if np.ndim(space.n) == 0 else [int(k) for k in space.n]
        data = {"type": "MultiBinary", "dtype": str(space.dtype), "n": n}
    else:
        raise ValueError(f"datasets support spaces {SUPPORTED}, got {space}")
    return json.dumps(data)


def deserialize_space(text: str | dict, where: str) -> gym.Space:
    """Inverse of :func:`serialize_space`; ValueError naming ``where`` on a bad entry."""
    try:
        data = json.loads(text) if isinstance(text, str) else dict(text)
        kind = data["type"]
        if kind == "Box":
            shape = tuple(data["shape"])
            low = np.asarray(data["low"], dtype=data["dtype"]).reshape(shape)
            high = np.asarray(data["high"], dtype=data["dtype"]).reshape(shape)
            return gym.spaces.Box(low, high, shape, dtype=np.dtype(data["dtype"]))
        if kind == "Discrete":
            return gym.spaces.Discrete(int(data["n"]), start=int(data.get("start", 0)))
        if kind == "MultiBinary":
            n = data["n"]
            return gym.spaces.MultiBinary(int(n) if np.ndim(n) == 0 else [int(k) for k in n])
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{where}: unreadable space {text!r}: {err}") from err
    raise ValueError(f"{where}: space type {kind!r} is not supported; supported: {SUPPORTED}")
