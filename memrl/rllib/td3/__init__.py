"""Recurrent TD3 (Fujimoto et al. 2018) for Box actions over any memrl memory core.

* :mod:`~memrl.rllib.td3.networks`: actor, twin critics, their histories (pure PyTorch);
* :mod:`~memrl.rllib.td3.losses`: target smoothing, clipped double-Q targets, masks, Polyak;
* :mod:`~memrl.rllib.td3.update`: the delayed update on replayed sequences (pure PyTorch);
* :mod:`~memrl.rllib.td3.module`: the RLModule the env runners act with;
* :mod:`~memrl.rllib.td3.algorithm`: the RLlib Algorithm and ``build_td3_config``.

The algorithm is imported on first use, so the pure-PyTorch parts work without the off-policy
plumbing loaded.
"""

from __future__ import annotations

from typing import Any

from memrl.rllib.td3.networks import TD3Networks
from memrl.rllib.td3.update import TD3Update, UpdateResult

_LAZY = {"TD3", "TD3Config", "build_td3_config"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from memrl.rllib.td3 import algorithm

        return getattr(algorithm, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "TD3",
    "TD3Config",
    "TD3Networks",
    "TD3Update",
    "UpdateResult",
    "build_td3_config",
]
