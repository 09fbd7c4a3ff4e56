"""``memrl tune SPEC.yaml [key=value ...] [--resume] [--dry-run]``: the command line."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from rich.console import Console

from memrl.config import ConfigError
from memrl.progress import setup_logging
from memrl.tune.report import print_report
from memrl.tune.search import run
from memrl.tune.spec import load_tune_spec
from memrl.tune.variants import plan


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="memrl tune",
        description="Hyperparameter search (Ray Tune) over a memrl config; see configs/tune/.",
        epilog="overrides: key=value into the spec, e.g. num_samples=4 storage_path=/abs/dir "
        "overrides.stop.iterations=2 'search.ppo.lr={choice: [0.001, 0.003]}'",
    )
    parser.add_argument("spec", help="search spec YAML (e.g. configs/tune/tmaze.yaml)")
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    parser.add_argument(
        "--resume", action="store_true", help="continue (or re-report) the experiment"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="validate and list the trials, start nothing"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``memrl tune`` and ``python -m memrl.tune``; returns the exit code."""
    args = _parser().parse_intermixed_args(sys.argv[1:] if argv is None else list(argv))
    console = Console(soft_wrap=True)
    # Checkpointing every iteration of short trials is intended, not a bottleneck to warn of.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    setup_logging()
    try:
        spec = load_tune_spec(args.spec, args.overrides)
        if args.dry_run:
            _, variants = plan(spec)
            for v in variants:
                console.print(f"trial {v.index:03d}: {' '.join(v.overrides)}", highlight=False)
            console.print(f"{len(variants)} trials valid", highlight=False)
            return 0
        results = run(spec, resume=args.resume, console=console)
    except ConfigError as err:
        console.print(f"[red]memrl tune: {err}[/red]", highlight=False)
        return 2
    return print_report(spec, results, console)
