"""Test helper for killing Ray actors: ``ray.kill`` returns at once, before the actor is gone."""

from __future__ import annotations

import time

import ray
from ray.exceptions import RayActorError


def kill_and_wait(handle, timeout_s: float = 30.0) -> None:
    """Kill a shard actor and wait until calls to it fail (a call made in between would still
    be served: seen once on a loaded machine, where a chunk sent right after the kill was acked)."""
    ray.kill(handle, no_restart=True)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            ray.get(handle.stats.remote(), timeout=5)
        except RayActorError:
            return
        time.sleep(0.05)
    raise AssertionError(f"killed actor still answers {timeout_s} s after ray.kill")
