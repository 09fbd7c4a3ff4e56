"""``memrl train CONFIG [key=value ...] [--resume PATH]``: one training run.

Also the Ray job entrypoint: ``python -m memrl.train ...`` is the same command. The config is
validated (and the env built once in this process) before Ray starts, so a typo costs a second,
not a cluster. On a cluster (``RAY_ADDRESS`` set, or ``resources.address``) this calls plain
``ray.init()``; on a laptop it starts a local Ray sized to the machine (token auth left on).
The run itself is :func:`memrl.loop.train`; this module is only the command line.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from memrl import checkpoints
from memrl.config import (
    ConfigError,
    TrainConfig,
    apply_overrides,
    config_from_dict,
    describe_schema,
    load_config,
)
from memrl.loop import TrainResult, train
from memrl.progress import progress_line, setup_logging

__all__ = ["TrainResult", "main", "resolve_cli", "train"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="memrl train",
        description="Train an agent from a YAML config (short name like tmaze/arelit, or a path).",
        epilog="overrides: dotted.key=value with YAML values, e.g. task.corridor_len=160 "
        "stop.iterations=2 model.core_kwargs.memory_len=64. --schema lists every key.",
    )
    parser.add_argument(
        "args",
        nargs="*",
        metavar="CONFIG [key=value ...]",
        help="config (optional with --resume: the checkpoint's own) then overrides",
    )
    parser.add_argument("--resume", metavar="PATH", help="checkpoint (or run folder) to continue")
    parser.add_argument("--schema", action="store_true", help="print every config key and exit")
    return parser


def resolve_cli(argv: Sequence[str]) -> tuple[TrainConfig, Path | None]:
    """Parse ``memrl train`` arguments into a validated config and a checkpoint to resume.

    Raises ConfigError (bad config or overrides) or FileNotFoundError (bad --resume path).
    """
    args = _parser().parse_args(list(argv))
    positional = list(args.args)
    config_name = positional.pop(0) if positional and "=" not in positional[0] else None
    overrides = positional
    resume = checkpoints.find_verified(args.resume) if args.resume else None
    if config_name is not None:
        cfg = load_config(config_name, overrides)
    elif resume is not None:
        data = apply_overrides(checkpoints.load_config_data(resume), overrides)
        cfg = config_from_dict(data, source=str(resume / checkpoints.CONFIG_FILE))
    else:
        raise ConfigError("give a CONFIG (e.g. tmaze/gru) or --resume PATH")
    return cfg, resume


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``memrl train`` and ``python -m memrl.train``; returns the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    console = Console(soft_wrap=True)
    if "--schema" in argv:
        console.print(describe_schema(), highlight=False, markup=False)
        return 0
    try:
        cfg, resume = resolve_cli(argv)
    except (ConfigError, FileNotFoundError, checkpoints.CheckpointError) as err:
        console.print(f"[red]memrl train: {err}[/red]", highlight=False)
        return 2
    setup_logging(cfg.logging.level)
    try:
        result = train(cfg, resume=resume, console=console)
    except (ConfigError, checkpoints.CheckpointError) as err:
        console.print(f"[red]memrl train: {err}[/red]", highlight=False)
        return 2
    final = result.final
    console.rule("[bold]done")
    if final is not None:
        console.print(progress_line(final), highlight=False, soft_wrap=True)
    console.print(
        f"iterations {result.iterations}, env steps {result.env_steps:,}, {result.time_s:.1f} s",
        highlight=False,
    )
    console.print(f"TensorBoard: tensorboard --logdir {result.run_dir}", highlight=False)
    if result.checkpoint is not None:
        console.print(f"checkpoint:  {result.checkpoint}", highlight=False)
        console.print(
            f"evaluate:    memrl eval {result.checkpoint} --episodes 100", highlight=False
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
