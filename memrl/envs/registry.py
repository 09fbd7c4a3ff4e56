"""Every environment id memrl knows, its registration with gymnasium, and ``make_env``.

``import memrl.envs`` calls :func:`register_all`, after which ``gymnasium.make(env_id)`` works for
every id in :data:`ENVS` (and for POPGym's own ``popgym-*`` ids). Entry points are strings, so
registering imports no optional package; building an env whose package is missing raises an
ImportError that says how to install it.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym


@dataclass(frozen=True)
class EnvEntry:
    """One registered id: ``entry_point`` is ``"module:callable"``; ``kwargs`` its defaults."""

    id: str
    entry_point: str
    family: str
    kwargs: dict[str, Any] = field(default_factory=dict)


def _tmaze() -> list[EnvEntry]:
    ep = "memrl.envs.tmaze:TMazeEnv"
    return [
        EnvEntry("memrl/TMaze-v0", ep, "tmaze"),
        # The ReLiT paper's settings: 6 distractor bits, corridors of 120 and 200 cells.
        EnvEntry("memrl/TMaze-120-v0", ep, "tmaze", {"corridor_len": 120, "num_distractors": 6}),
        EnvEntry("memrl/TMaze-200-v0", ep, "tmaze", {"corridor_len": 200, "num_distractors": 6}),
    ]


def _memory_gym() -> list[EnvEntry]:
    from memrl.envs.memory_gym import TASKS  # imports no optional package

    ep = "memrl.envs.memory_gym:MemoryGymEnv"
    return [EnvEntry(f"memrl/{task}", ep, "memory_gym", {"task": task}) for task in TASKS]


def _memory_maze() -> list[EnvEntry]:
    from memrl.envs.memory_maze import SIZES  # imports no optional package

    ep = "memrl.envs.memory_maze:MemoryMazeEnv"
    return [EnvEntry(f"memrl/MemoryMaze-{s}-v0", ep, "memory_maze", {"size": s}) for s in SIZES]


def _popgym() -> list[EnvEntry]:
    from memrl.envs.popgym_envs import popgym_classes

    ep = "memrl.envs.popgym_envs:make_popgym"
    return [EnvEntry(f"memrl/{i}", ep, "popgym", {"popgym_id": i}) for i in popgym_classes()]


def _continuous() -> list[EnvEntry]:
    out = []
    for name, ep in (
        ("Pendulum", "memrl.envs.continuous:make_pendulum"),
        ("CartPoleContinuous", "memrl.envs.continuous:make_cartpole"),
    ):
        out += [EnvEntry(f"memrl/{name}-{v}-v0", ep, "continuous", {"variant": v}) for v in "FPV"]
    # A memory task with a 2-D action: the goal is shown only at the first step.
    out.append(
        EnvEntry("memrl/PointGoalMemory-v0", "memrl.envs.point_goal:make_point_goal", "continuous")
    )
    return out


ENVS: dict[str, EnvEntry] = {
    e.id: e
    for e in [
        *_tmaze(),
        *_memory_gym(),
        *_memory_maze(),
        *_popgym(),
        *_continuous(),
        EnvEntry("memrl/Market-v0", "memrl.envs.market:MarketEnv", "market"),
    ]
}

# Keyword arguments that gymnasium.make itself takes besides the env's own.
_MAKE_KWARGS = ("max_episode_steps", "disable_env_checker")


def register_all() -> None:
    """Register every id of :data:`ENVS` with gymnasium (idempotent), and POPGym's ids."""
    for entry in ENVS.values():
        if entry.id not in gym.registry:
            gym.register(entry.id, entry_point=entry.entry_point, kwargs=dict(entry.kwargs))
    # popgym registers its own ids on import; it is a core dependency, but stay usable without it.
    with contextlib.suppress(ImportError):
        importlib.import_module("popgym")


def list_envs(family: str | None = None) -> list[str]:
    """memrl's ids (all, or one ``family``'s), sorted."""
    return sorted(e.id for e in ENVS.values() if family is None or e.family == family)


def _load(entry_point: Any) -> Callable[..., Any]:
    if callable(entry_point):
        return entry_point
    module, _, attr = str(entry_point).partition(":")
    return getattr(importlib.import_module(module), attr)


def env_kwargs(env_id: str) -> list[str] | None:
    """The kwargs ``make_env(env_id, ...)`` accepts, or None when the env takes ``**kwargs``."""
    spec = gym.spec(env_id)
    target = _load(spec.entry_point)
    params = inspect.signature(target.__init__ if inspect.isclass(target) else target).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return None
    own = [n for n, p in params.items() if n != "self" and p.kind is not p.VAR_POSITIONAL]
    return sorted(set(own) | set(_MAKE_KWARGS))


def _check_id(env_id: str) -> None:
    if env_id in gym.registry:
        return
    ours = list_envs()
    known = sorted(set(gym.registry) | set(ours))
    close = difflib.get_close_matches(env_id, known, n=5, cutoff=0.5)
    # POPGym's 40-odd ids would drown the message: they are summarised by count.
    rest = [i for i in ours if i not in close and ENVS[i].family != "popgym"]
    n_popgym = len(list_envs("popgym"))
    raise ValueError(
        f"unknown env id {env_id!r}; closest: {close or 'none'}; memrl ids: {rest}, "
        f"{n_popgym} memrl/popgym-* ids (memrl.envs.list_envs('popgym')), "
        f"and any other gymnasium id"
    )


def make_env(env_id: str, **kwargs: Any) -> gym.Env:
    """``gymnasium.make(env_id, **kwargs)`` after checking the id and the kwargs.

    Raises:
        ValueError: ``env_id`` is not registered (the message lists the closest ids, then all of
            memrl's), or a kwarg is not one the env accepts (the message lists the valid ones).
        ImportError: the env's package is not installed (the message says how to install it).
    """
    register_all()
    _check_id(env_id)
    valid = env_kwargs(env_id)
    if valid is not None:
        bad = sorted(set(kwargs) - set(valid))
        if bad:
            raise ValueError(f"env {env_id!r} got unknown kwarg(s) {bad}; valid: {valid}")
    return gym.make(env_id, **kwargs)


def resolve_env_id(env_name: str) -> str:
    """The registered gymnasium id for ``env_name``, as given or with the ``memrl/`` prefix.

    Raises ValueError naming ``task.env_name`` and listing the closest registered ids.
    """
    register_all()
    for candidate in (env_name, f"memrl/{env_name}"):
        if candidate in gym.registry:
            return candidate
    known = sorted(gym.registry)
    close = difflib.get_close_matches(env_name, known, n=5, cutoff=0.5)
    close += [
        k for k in difflib.get_close_matches(f"memrl/{env_name}", known, n=3) if k not in close
    ]
    ours = [k for k in known if k.startswith("memrl/")]
    popgym = sum(k.startswith("popgym-") for k in known)
    raise ValueError(
        f"task.env_name: unknown env {env_name!r}; closest: {close or 'none'}; "
        f"memrl ids: {ours} (plus {popgym} popgym-* ids and any other gymnasium id)"
    )
