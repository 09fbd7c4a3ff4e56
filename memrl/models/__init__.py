"""Memory cores: pure PyTorch, no Ray, no RLlib. ``make_core(name, input_dim=..., **kwargs)``."""

from __future__ import annotations

import importlib

import torch

from memrl.models.base import MASK_SUFFIX, MemoryCore, State, StateSpec

# name -> module under memrl.models holding a MemoryCore subclass with that ``name``. Imported
# lazily so that building one core does not import the others.
_REGISTRY: dict[str, str] = {
    "gru": "recurrent",
    "lstm": "recurrent",
    "trxl": "trxl",
    "gtrxl": "gtrxl",
    "relit": "relit",
    "arelit": "arelit",
    "brt": "brt",
    "local_xl": "local_xl",
    "mlp": "mlp",  # the memoryless baseline: no state
}
CORES: tuple[str, ...] = tuple(_REGISTRY)


def core_class(name: str) -> type[MemoryCore]:
    """The class registered as ``name``; ValueError listing the valid names otherwise."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown core {name!r}; valid cores: {', '.join(CORES)}")
    module = importlib.import_module(f"memrl.models.{_REGISTRY[name]}")
    for obj in vars(module).values():
        if isinstance(obj, type) and issubclass(obj, MemoryCore) and obj.name == name:
            return obj
    raise RuntimeError(f"memrl.models.{_REGISTRY[name]} defines no core named {name!r}")


def make_core(name: str, input_dim: int, **kwargs: object) -> MemoryCore:
    """Build core ``name`` for inputs of size ``input_dim``.

    Raises ValueError for an unknown name or an unknown keyword, listing the valid ones.
    """
    cls = core_class(name)
    valid = cls.hyperparameters()
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise ValueError(
            f"unknown argument(s) {unknown} for core {name!r}; valid: "
            + ", ".join(f"{k}={v!r}" for k, v in valid.items())
        )
    return cls(input_dim, **kwargs)


def check_core_name(core: object, field: str = "core") -> None:
    """ValueError naming ``field`` and the registered cores unless ``core`` is one of them."""
    if core not in _REGISTRY:
        raise ValueError(f"{field} must be one of {list(CORES)}, got {core!r}")


def state_kinds(name: str, **kwargs: object) -> set[str]:
    """The kinds ("carry", "window") of core ``name``'s state fields; empty for no state.

    Builds a throwaway core of input 1 with the global torch RNG forked, so asking changes no
    later weight initialisation.
    """
    with torch.random.fork_rng(devices=[]):
        return {s.kind for s in make_core(name, 1, **kwargs).state_spec().values()}


def window_memory_len(name: str, core_kwargs: dict[str, object] | None = None) -> int:
    """Longest window (M) among core ``name``'s state fields; 0 for a core without a window."""
    with torch.random.fork_rng(devices=[]):
        spec = make_core(name, 1, **(core_kwargs or {})).state_spec()
    return max((s.memory_len for s in spec.values() if s.kind == "window"), default=0)


def cores_with_state(kind: str) -> tuple[str, ...]:
    """Registered cores having a state field of ``kind`` ("carry" or "window"; default kwargs)."""
    return tuple(name for name in CORES if kind in state_kinds(name))


def stateful_cores() -> tuple[str, ...]:
    """Registered cores with any state: every core but the memoryless baseline."""
    return tuple(name for name in CORES if state_kinds(name))


__all__ = [
    "CORES",
    "MASK_SUFFIX",
    "MemoryCore",
    "State",
    "StateSpec",
    "check_core_name",
    "core_class",
    "cores_with_state",
    "make_core",
    "state_kinds",
    "stateful_cores",
    "window_memory_len",
]
