"""POPGym (Morad et al., 2023) envs by id, with POPGym's own wrappers applied correctly.

POPGym registers ``popgym-<Name>-v0`` with gymnasium, but its wrappers (``PreviousAction``,
``Antialias``, ...) assert that they wrap a raw POPGym env, which the output of ``gymnasium.make``
is not. memrl registers ``memrl/popgym-<Name>-v0`` for each of POPGym's ids: the raw env class is
built, the named POPGym wrappers are applied to it, and only then does gymnasium add its own.
Each ``info`` dict is copied (CountRecall and MultiarmedBandit hand out the same dict twice,
which gymnasium's strict ``check_env`` rejects).

The Labyrinth ids exist only when the optional ``mazelib`` package is installed.
"""

from __future__ import annotations

import inspect
from typing import Any

import gymnasium as gym

# Wrapper names accepted in ``wrappers=`` -> attribute of popgym.wrappers.
WRAPPERS = ("PreviousAction", "Antialias", "Flatten", "DiscreteAction")


def popgym_classes() -> dict[str, type]:
    """``{"popgym-RepeatPreviousEasy-v0": RepeatPreviousEasy, ...}``; {} without popgym."""
    try:
        import popgym.envs as envs
    except ImportError:
        return {}
    return {spec["id"]: cls for cls, spec in envs.ALL.items()}


class _CopyInfo(gym.Wrapper):
    """Hands out a fresh ``info`` dict at every reset and step."""

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        return obs, dict(info)

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, reward, terminated, truncated, dict(info)


def make_popgym(
    popgym_id: str, wrappers: list[str] | tuple[str, ...] = (), **kwargs: Any
) -> gym.Env:
    """The raw POPGym env ``popgym_id`` with POPGym ``wrappers`` applied in order.

    Args:
        popgym_id: POPGym's id, e.g. ``"popgym-RepeatPreviousEasy-v0"``.
        wrappers: names from :data:`WRAPPERS`, innermost first.
        kwargs: the env class's own arguments.

    Raises:
        ValueError: unknown id, wrapper or kwarg (the message lists the valid ones).
    """
    classes = popgym_classes()
    if popgym_id not in classes:
        raise ValueError(f"unknown POPGym id {popgym_id!r}; valid: {sorted(classes)}")
    cls = classes[popgym_id]
    params = inspect.signature(cls.__init__).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        valid = sorted(n for n in params if n != "self")
        bad = sorted(set(kwargs) - set(valid))
        if bad:
            raise ValueError(f"{popgym_id} got unknown kwarg(s) {bad}; valid: {valid}")
    bad_wrappers = [w for w in wrappers if w not in WRAPPERS]
    if bad_wrappers:
        raise ValueError(f"unknown POPGym wrapper(s) {bad_wrappers}; valid: {list(WRAPPERS)}")
    import popgym.wrappers as popgym_wrappers

    env = cls(**kwargs)
    for name in wrappers:
        env = getattr(popgym_wrappers, name)(env)
    return _CopyInfo(env)
