"""``memrl data``: ``collect`` a dataset by rolling out a policy, ``info`` about a dataset.

memrl data collect CONFIG|ENV_ID --episodes N --out DIR [--seed S]          (random policy)
memrl data collect CHECKPOINT --episodes N --out DIR [--noise SIGMA | --epsilon EPS] [--seed S]
memrl data merge OUT IN1 IN2 ... [--dataset-id ID]    (one dataset from several of one env)
memrl data info DIR

A checkpoint is verified and played as ``memrl eval`` plays it (see :mod:`memrl.rollout`): td3
its deterministic actor (``--noise``: plus Gaussian noise, std in half action ranges), r2d2
greedy (``--epsilon``: epsilon-greedy), ppo greedy. Bad input is one line on stderr, exit 2,
and nothing is written.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from memrl.checkpoints import CheckpointError
from memrl.config import ConfigError
from memrl.data import DatasetError


def _env_of(source: str) -> tuple[str, dict]:
    """(env id, kwargs) of a config name/path, or of a gymnasium id given directly."""
    from memrl.config import ConfigError, load_config
    from memrl.envs import resolve_env_id

    try:
        cfg = load_config(source)
        return resolve_env_id(cfg.task.env_name), cfg.task.env_kwargs
    except (ConfigError, FileNotFoundError, ValueError):
        return resolve_env_id(source), {}


def _is_checkpoint(source: str) -> bool:
    from memrl.checkpoints import find

    try:
        find(source)
    except (FileNotFoundError, ValueError):
        return False
    return True


def _collect(args: argparse.Namespace) -> int:
    from memrl.data.collect import collect
    from memrl.rollout import behaviour_for, collect_checkpoint

    if _is_checkpoint(args.source):
        writer = collect_checkpoint(
            args.source, args.out, args.episodes, noise=args.noise, epsilon=args.epsilon,
            seed=args.seed,
        )  # fmt: skip
    else:
        behaviour_for(None, args.noise, args.epsilon)  # a random policy takes neither flag
        if args.episodes < 1:
            raise ConfigError(f"--episodes: must be >= 1, got {args.episodes}")
        env_id, env_kwargs = _env_of(args.source)
        writer = collect(env_id, args.out, args.episodes, env_kwargs=env_kwargs, seed=args.seed)
    print(f"wrote {writer.total_episodes} episodes, {writer.total_steps} steps to {args.out}")
    return 0


def _merge(args: argparse.Namespace) -> int:
    from memrl.data import merge_datasets

    writer = merge_datasets(args.out, args.inputs, dataset_id=args.dataset_id)
    print(
        f"wrote {writer.total_episodes} episodes, {writer.total_steps} steps from "
        f"{len(args.inputs)} datasets to {args.out}"
    )
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
    c.add_argument(
        "source",
        help="a memrl checkpoint (or run folder), or a config name/path or gymnasium env id "
        "(random policy)",
    )
    c.add_argument("--episodes", type=int, required=True)
    c.add_argument("--out", type=Path, required=True)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument(
        "--noise", type=float, default=None,
        help="td3 checkpoint: Gaussian action noise, std in half action ranges",
    )  # fmt: skip
    c.add_argument("--epsilon", type=float, default=None, help="r2d2 checkpoint: epsilon-greedy")
    m = sub.add_parser("merge", help="write several datasets of one env into a new one")
    m.add_argument("out", type=Path, help="the new dataset's directory")
    m.add_argument("inputs", type=Path, nargs="+", help="datasets, in the order to copy them")
    m.add_argument("--dataset-id", default=None, help="the new dataset's id (Minari's)")
    i = sub.add_parser("info", help="episodes, steps, returns and action bounds of a dataset")
    i.add_argument("directory", type=Path)
    args = parser.parse_args(argv)
    try:
        return {"collect": _collect, "merge": _merge, "info": _info}[args.command](args)
    except (ConfigError, CheckpointError, DatasetError, FileNotFoundError, ValueError) as err:
        print(f"memrl data {args.command}: {err}", file=sys.stderr)
        return 2
