"""``memrl repro SUITE [--seeds N] [--scale cpu|paper] [--jobs K] [--out DIR] [--cells PATTERN]
[--checkpoint-every N] [--dry-run]``: run a learning suite and write its report.

SUITE is a name under ``configs/repro/`` (quick, horizon, paper) or a path. Outputs go to
``results/repro/<suite>/`` (``<suite>-paper`` at paper scale): ``cells/*.json`` (one per
finished cell; a rerun skips them), ``results.json``, ``report.md`` and ``<task>.png``. Each
cell checkpoints every ``--checkpoint-every`` iterations; a cell killed mid-run continues from its
newest checkpoint on the next invocation (memrl.repro.cell).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from memrl.config import ConfigError
from memrl.repro.cells import CHECKPOINT_EVERY, plan_cells
from memrl.repro.report import write_outputs
from memrl.repro.runner import load_finished, run_cells, select
from memrl.repro.suite import load_suite


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="memrl repro", description=__doc__.splitlines()[0])
    parser.add_argument("suite", help="suite name under configs/repro/ or a YAML path")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per cell (suite default)")
    parser.add_argument("--scale", choices=("cpu", "paper"), default="cpu",
                        help="paper: each task's paper-scale configs, unchanged")  # fmt: skip
    parser.add_argument(
        "--jobs", type=int, default=None, help="cells at once (default: the Ray cluster's CPUs)"
    )
    parser.add_argument(
        "--out", default=None, help="results folder (default results/repro/<suite>)"
    )
    parser.add_argument("--cells", default=None, metavar="PATTERN",
                        help="glob(s) on task/core/L<len>/s<seed>, comma-separated")  # fmt: skip
    parser.add_argument(
        "--checkpoint-every", type=int, default=CHECKPOINT_EVERY, metavar="N",
        help="iterations between a cell's checkpoints; a killed cell resumes from its newest "
        f"(0: only the final one; default {CHECKPOINT_EVERY})",
    )  # fmt: skip
    parser.add_argument("--dry-run", action="store_true", help="list the cells and exit")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``memrl repro`` and ``python -m memrl.repro``; returns the exit code."""
    from memrl.progress import setup_logging

    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    console = Console(soft_wrap=True)
    command = shlex.join(["memrl", "repro", *argv])
    for flag in ("seeds", "jobs"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            console.print(f"[red]memrl repro: --{flag} must be >= 1, got {value}[/red]")
            return 2
    if args.checkpoint_every < 0:
        console.print(f"[red]memrl repro: --checkpoint-every must be >= 0, got "
                      f"{args.checkpoint_every}[/red]")  # fmt: skip
        return 2
    try:
        spec = load_suite(args.suite)
        assert spec.name is not None
        default_out = spec.name if args.scale == "cpu" else f"{spec.name}-paper"
        out = Path(args.out or Path("results/repro") / default_out).resolve()
        cells = plan_cells(spec, args.scale, args.seeds or spec.seeds, out, args.checkpoint_every)
    except ConfigError as err:
        console.print(f"[red]memrl repro: {err}[/red]", highlight=False, markup=False)
        return 2
    chosen = select(cells, args.cells)
    if not chosen:
        console.print(f"[red]memrl repro: no cell matches --cells {args.cells!r}[/red]")
        return 2
    if args.dry_run:
        finished = load_finished(out)
        for cell in chosen:
            state = finished.get(cell.key)
            mark = "todo" if state is None or state.status != "ok" else "done"
            console.print(f"{mark}  {cell.id}  ({cell.core_name}, key {cell.key[:12]})",
                          highlight=False)  # fmt: skip
        console.print(f"{len(chosen)} cells; outputs in {out}", highlight=False)
        return 0
    setup_logging("INFO")
    summary = run_cells(chosen, out, jobs=args.jobs)
    # The report covers every cell of the suite that has a result, not only this run's.
    results = {**load_finished(out), **summary.results}
    paths = write_outputs(spec, cells, results, out, scale=args.scale, command=command)
    console.print(
        f"{summary.ran} cells run ({summary.failed} failed), {summary.reused} reused; "
        f"report: {paths['report']}",
        highlight=False,
    )
    return 1 if summary.failed else 0


if __name__ == "__main__":
    sys.exit(main())
