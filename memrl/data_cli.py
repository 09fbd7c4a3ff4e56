"""``memrl data``: ``collect`` a dataset by rolling out a policy, ``info`` about a dataset.

memrl data collect CONFIG|ENV_ID --episodes N --out DIR [--seed S]
memrl data info DIR
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def _env_of(source: str) -> tuple[str, dict]:
    """(env id, kwargs) of a config name/path, or of a gymnasium id given directly."""
    from memrl.config import ConfigError, load_config, resolve_env_id

    try:
        cfg = load_config(source)
        return resolve_env_id(cfg.task.env_name), cfg.task.env_kwargs
    except (ConfigError, FileNotFoundError, ValueError):
        return resolve_env_id(source), {}


def _collect(args: argparse.Namespace) -> int:
    from memrl.checkpoints import find
    from memrl.data.collect import collect

    try:
        find(args.source)
        is_checkpoint = True
    except (FileNotFoundError, ValueError):
        is_checkpoint = False
    if is_checkpoint or args.noise is not None or args.epsilon is not None:
        raise SystemExit(
            "memrl data collect: rolling out a trained checkpoint (--noise/--epsilon) is not "
            "implemented yet; give a config or env id to collect with a random policy"
        )
    env_id, env_kwargs = _env_of(args.source)
    writer = collect(env_id, args.out, args.episodes, env_kwargs=env_kwargs, seed=args.seed)
    print(f"wrote {writer.total_episodes} episodes, {writer.total_steps} steps to {args.out}")
    return 0


def _info(args: argparse.Namespace) -> int:
    from memrl.data import iter_episodes, read_info

    info = read_info(args.directory)
    returns, terminated = [], 0
    for episode in iter_episodes(args.directory):
        returns.append(episode.total_reward)
        terminated += episode.terminated
    r = np.asarray(returns)
    space = info.action_space
    bounds = (
        {"low": space.low.tolist(), "high": space.high.tolist()}
        if hasattr(space, "low")
        else {"n": int(space.n), "start": int(space.start)}
    )
    summary = {
        "dataset_id": info.dataset_id,
        "env_id": info.env_id,
        "episodes": info.total_episodes,
        "steps": info.total_steps,
        "terminated_episodes": int(terminated),
        "return": {
            "mean": float(r.mean()) if r.size else None,
            "std": float(r.std()) if r.size else None,
            "min": float(r.min()) if r.size else None,
            "max": float(r.max()) if r.size else None,
        },
        "action_space": bounds,
        "collector": info.collector,
    }
    print(json.dumps(summary, indent=2))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="memrl data", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("collect", help="roll out a policy into a new dataset")
    c.add_argument("source", help="config name/path, or a gymnasium env id (random policy)")
    c.add_argument("--episodes", type=int, required=True)
    c.add_argument("--out", type=Path, required=True)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--noise", type=float, default=None, help="Gaussian action noise (checkpoint)")
    c.add_argument("--epsilon", type=float, default=None, help="epsilon-greedy (checkpoint)")
    i = sub.add_parser("info", help="episodes, steps, returns and action bounds of a dataset")
    i.add_argument("directory", type=Path)
    args = parser.parse_args(argv)
    return _collect(args) if args.command == "collect" else _info(args)
