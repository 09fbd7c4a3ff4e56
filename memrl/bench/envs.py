"""Environment throughput: single-core steps/s of each env family.

``memrl bench envs --out results/envs.json``. Each env is built, reset with a seed (not timed:
Memory Maze builds its task then), and stepped with pre-sampled random actions, resetting when an
episode ends (timed). The process is pinned to one CPU while it runs, so figures are per core.
The raw env is timed (``env.unwrapped``-level wrappers that the id defines stay; gymnasium's
checker wrappers do not). A family whose package is missing is reported as skipped.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import time
from typing import Any

from memrl.bench.report import write_report

log = logging.getLogger(__name__)

# family -> [(env id, make kwargs, label)]
CASES: dict[str, list[tuple[str, dict[str, Any], str]]] = {
    "tmaze": [("memrl/TMaze-120-v0", {}, "corridor 120, 6 distractors")],
    "memory_gym": [
        ("memrl/MysteryPath-Grid-v0", {}, ""),
        ("memrl/MortarMayhem-Grid-v0", {}, ""),
        ("memrl/SearingSpotlights-v0", {}, ""),
    ],
    "memory_maze": [
        ("memrl/MemoryMaze-9x9-v0", {"fast_contacts": True}, "fast_contacts"),
        ("memrl/MemoryMaze-9x9-v0", {"fast_contacts": False}, "dm_control contact loop"),
        ("memrl/MemoryMaze-15x15-v0", {"fast_contacts": True}, "fast_contacts"),
    ],
    "popgym": [
        ("memrl/popgym-RepeatPreviousEasy-v0", {}, ""),
        ("memrl/popgym-PositionOnlyCartPoleEasy-v0", {}, ""),
        ("memrl/popgym-MineSweeperEasy-v0", {}, ""),
    ],
    "continuous": [
        ("memrl/Pendulum-P-v0", {}, ""),
        ("memrl/CartPoleContinuous-P-v0", {}, ""),
    ],
    "market": [("memrl/Market-v0", {}, "synthetic 100k bars")],
}
# Steps per case: slow families get fewer so the whole run takes a few minutes.
STEPS = {"memory_gym": 2000, "memory_maze": 300}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--families",
        nargs="+",
        default=list(CASES),
        choices=list(CASES),
        help="env families to time (default: all)",
    )
    parser.add_argument(
        "--steps", type=int, default=20_000, help="timed steps per fast env (default 20000)"
    )
    parser.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="multiply every step count (e.g. 0.1 for a smoke run)",
    )


def _time_env(env_id: str, kwargs: dict[str, Any], steps: int) -> tuple[float, int]:
    from gymnasium.wrappers import OrderEnforcing

    from memrl.envs import make_env

    env = make_env(env_id, disable_env_checker=True, **kwargs)
    # gymnasium.make adds OrderEnforcing (and the checker, disabled above): time what is under it.
    raw = env.env if isinstance(env, OrderEnforcing) else env
    env.action_space.seed(0)
    actions = [env.action_space.sample() for _ in range(min(steps, 4096))]
    raw.reset(seed=0)
    start = time.perf_counter()
    for i in range(steps):
        _, _, terminated, truncated, _ = raw.step(actions[i % len(actions)])
        if terminated or truncated:
            raw.reset()
    elapsed = time.perf_counter() - start
    env.close()
    return elapsed, steps


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Time every case of ``args.families``; write JSON + Markdown to ``args.out``."""
    cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    if cpus:
        os.sched_setaffinity(0, {min(cpus)})  # one core: the figure is per core
    rows: list[dict[str, Any]] = []
    try:
        for family in args.families:
            for env_id, kwargs, label in CASES[family]:
                steps = max(10, int(STEPS.get(family, args.steps) * args.scale))
                row: dict[str, Any] = {"family": family, "env_id": env_id, "variant": label}
                try:
                    seconds, n = _time_env(env_id, kwargs, steps)
                except ImportError as err:
                    row.update(steps=0, seconds=None, steps_per_s=None, note=f"skipped: {err}")
                else:
                    row.update(steps=n, seconds=seconds, steps_per_s=n / seconds, note="")
                log.info("%s %s %s", env_id, label, row.get("steps_per_s"))
                rows.append(row)
    finally:
        if cpus:
            os.sched_setaffinity(0, cpus)
    payload = {
        "benchmark": "envs",
        "machine": {"platform": platform.platform(), "cpus_total": os.cpu_count()},
        "pinned_to_one_core": bool(cpus),
        "rows": rows,
    }
    write_report(
        args.out,
        payload,
        rows,
        columns=["family", "env_id", "variant", "steps", "seconds", "steps_per_s", "note"],
        notes="Single-core steps/s with pre-sampled random actions, resets included "
        "(first seeded reset excluded). Command: `memrl bench envs --out results/envs.json`.",
    )
    return rows
