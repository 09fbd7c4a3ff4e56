"""The table of a finished search, its best trial and the command that reproduces it."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from memrl.tune.spec import TuneSpec
from memrl.tune.variants import override


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.4g}"
    return "-" if value is None else str(value)


def short_names(keys: Sequence[str]) -> list[str]:
    """Column names: each dotted key's last part, or the whole key where that is ambiguous."""
    last = [k.rsplit(".", 1)[-1] for k in keys]
    return [k if last.count(name) > 1 else name for k, name in zip(keys, last, strict=True)]


def results_table(spec: TuneSpec, results: Any) -> tuple[Table, Any]:
    """A rich table of every trial (params, iterations, metric) and the best result (or None)."""
    rows = sorted(results, key=lambda r: r.config["variant"]["index"])
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r.config["variant"]["params"] if k not in keys]
    try:
        best = results.get_best_result(spec.metric, spec.mode, scope="last")
    except RuntimeError:  # no trial reported a finite metric
        best = None
    table = Table(title=f"{spec.name}: {spec.metric} ({spec.mode}); * = best")
    for col in ("trial", *short_names(keys), "iters", "env steps", spec.metric, "status"):
        table.add_column(
            col, justify="left" if col in ("trial", "status") else "right", no_wrap=True
        )
    for r in rows:
        variant, metrics = r.config["variant"], r.metrics or {}
        status = "error" if r.error else "ok"
        value = metrics.get(spec.metric)
        mark = best is not None and r.path == best.path
        table.add_row(
            f"{variant['index']:03d}{' *' if mark else ''}",
            *(_fmt(variant["params"].get(k)) for k in keys),
            _fmt(metrics.get("iteration")),
            _fmt(metrics.get("env_steps")),
            _fmt(value),
            status,
            style="bold green" if mark else None,
        )
    return table, best


def print_report(spec: TuneSpec, results: Any, console: Console) -> int:
    """Print the table, the best trial and how to reproduce it; returns the exit code."""
    table, best = results_table(spec, results)
    # A pipe or a log file gets rich's default 80 columns: too few for the table.
    wide = console if console.is_terminal else Console(file=console.file, width=200)
    wide.print(table)
    errors = [r for r in results if r.error]
    for r in errors:
        console.print(f"[red]trial {r.config['variant']['index']:03d} failed: {r.error}[/red]")
    if best is None:
        console.print(f"[yellow]no trial reported a finite {spec.metric}[/yellow]")
        return 1 if errors else 0
    variant = best.config["variant"]
    console.print(
        f"best: trial {variant['index']:03d}  {spec.metric} = {_fmt(best.metrics[spec.metric])}"
        f"  {variant['params']}",
        highlight=False,
    )
    fixed = [override(k, v) for k, v in spec.overrides.items()]
    cmd = " ".join(["memrl train", spec.base, *(f"'{o}'" for o in (*fixed, *variant["overrides"]))])
    console.print(f"reproduce: {cmd}", highlight=False, soft_wrap=True)
    console.print(f"trial folder: {best.path}", highlight=False)
    if best.checkpoint is not None:
        console.print(f"checkpoint:   {best.checkpoint.path}", highlight=False)
    console.print(f"TensorBoard:  tensorboard --logdir {spec.experiment_path}", highlight=False)
    return 1 if errors else 0
