"""``make demo``: train GTrXL and GRU with PPO on a short T-Maze, evaluate, plot.

Runs ``configs/demo/{gtrxl,gru}.yaml`` one after the other on a local Ray (a few minutes on 2
CPU cores), evaluates each final checkpoint greedily (success rate with a 95% Wilson interval),
and writes the learning curves to ``results/demo/learning_curves.png``.

``python -m memrl.demo [key=value ...]`` applies the overrides to both configs (e.g.
``stop.time_s=60``).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from memrl.config import ConfigError, load_config
from memrl.evaluate import EvalReport, evaluate
from memrl.loop import TrainResult, train
from memrl.progress import read_metrics, setup_logging
from memrl.resources import init_ray

DEMO_CONFIGS = ("demo/gtrxl", "demo/gru")
PLOT_PATH = Path("results/demo/learning_curves.png")

log = logging.getLogger("memrl.demo")  # not __name__: "__main__" under python -m


def plot_learning_curves(run_dirs: dict[str, Path], path: Path) -> Path:
    """Episode return mean against env steps, one line per run; returns the PNG path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for label, run_dir in run_dirs.items():
        rows = [r for r in read_metrics(run_dir) if r.get("episode_return_mean") is not None]
        ax.plot(
            [r["env_steps"] for r in rows],
            [r["episode_return_mean"] for r in rows],
            label=label,
            linewidth=2,
        )
    ax.set_xlabel("env steps")
    ax.set_ylabel("episode return (mean of recent episodes)")
    ax.set_title("PPO on T-Maze (memrl demo)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path.resolve()


def main(argv: Sequence[str] | None = None) -> int:
    """Train, evaluate and plot; returns the exit code."""
    overrides = list(sys.argv[1:] if argv is None else argv)
    console = Console(soft_wrap=True)
    setup_logging("INFO")
    try:
        configs = [load_config(name, overrides) for name in DEMO_CONFIGS]
    except ConfigError as err:
        console.print(f"[red]memrl demo: {err}[/red]", highlight=False)
        return 2

    import ray

    started = init_ray(configs[0])  # one Ray for both runs and both evaluations
    results: dict[str, tuple[TrainResult, EvalReport]] = {}
    try:
        for cfg in configs:
            console.rule(f"[bold]training {cfg.model.core} ({cfg.name})")
            result = train(cfg, console=console)
            if result.checkpoint is None:
                console.print(f"[red]{cfg.name}: no checkpoint was written[/red]")
                return 1
            report = evaluate(result.checkpoint, cfg.evaluation.episodes)
            results[cfg.model.core] = (result, report)
    finally:
        if started:
            ray.shutdown()

    table = Table(title="memrl demo: PPO on T-Maze, greedy evaluation")
    for column in ("core", "env steps", "train s", "success", "95% CI", "return"):
        table.add_column(column, justify="right")
    for core, (result, report) in results.items():
        low, high = report.success_ci95 or (float("nan"), float("nan"))
        table.add_row(
            core,
            f"{result.env_steps:,}",
            f"{result.time_s:.0f}",
            f"{report.success_rate:.1%}" if report.success_rate is not None else "-",
            f"{low:.1%} .. {high:.1%}",
            f"{report.return_mean:.2f}",
        )
    console.print(table)
    console.print("a memoryless policy succeeds 50% of the time (the junction hides the goal side)")
    png = plot_learning_curves(
        {core: result.run_dir for core, (result, _) in results.items()}, PLOT_PATH
    )
    logs = {result.run_dir.parent for result, _ in results.values()}
    console.print(f"learning curves: {png}", highlight=False)
    for folder in sorted(logs):
        console.print(f"TensorBoard:     tensorboard --logdir {folder}", highlight=False)
    for core, (result, _) in results.items():
        console.print(f"checkpoint ({core}): {result.checkpoint}", highlight=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
