"""A suite's outputs: ``results.json``, ``report.md`` and one PNG of learning curves per task.

Per (task, core, seq len), over the seeds that finished: the final return's mean with a 95%
Student-t interval over seeds, the success rate's mean (and interval), how many seeds reached the
threshold and their mean env steps to it, and the mean env steps/s; for PPO cells also the success
rate (or, without one, the return) of the policy's sampled actions on the same episodes. The
*margin* of a cell is its mean final return minus the memoryless baseline's, the baseline taken at
the same seq len when the suite runs it there, else the baseline's best seq len (the harder
comparison). A cell *passes* when its margin is >= the task's margin.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from memrl.repro.cell import CellResult
from memrl.repro.cells import Cell
from memrl.repro.stats import curves_on_grid, t_interval
from memrl.repro.suite import SuiteSpec


@dataclass
class Group:
    """The seeds of one (task, core, seq len)."""

    task: str
    core: str
    core_name: str
    seq_len: int
    seeds: list[int]
    results: list[CellResult]  # finished (ok) ones
    failed: list[CellResult]
    missing: list[int]  # seeds with no result at all (not run: interrupted or filtered)

    def stat(self, name: str) -> dict[str, Any] | None:
        values = [getattr(r, name) for r in self.results if getattr(r, name) is not None]
        if not values:
            return None
        mean, low, high = t_interval(values)
        return {"mean": mean, "ci95": [low, high] if len(values) > 1 else None, "n": len(values),
                "per_seed": values}  # fmt: skip


def group_results(
    spec: SuiteSpec, cells: Sequence[Cell], results: dict[str, CellResult]
) -> dict[str, list[Group]]:
    """Cells grouped by task, then (core, seq len) in the suite's order."""
    groups: dict[tuple[str, str, int], Group] = {}
    for cell in cells:
        key = (cell.task, cell.core, cell.seq_len)
        group = groups.setdefault(
            key, Group(cell.task, cell.core, cell.core_name, cell.seq_len, [], [], [], [])
        )
        group.seeds.append(cell.seed)
        result = results.get(cell.key)
        if result is None:
            group.missing.append(cell.seed)
        elif result.status == "ok":
            group.results.append(result)
        else:
            group.failed.append(result)
    by_task: dict[str, list[Group]] = {}
    for group in groups.values():
        by_task.setdefault(group.task, []).append(group)
    return by_task


def _baseline(spec: SuiteSpec, groups: list[Group], seq_len: int) -> Group | None:
    base = [g for g in groups if g.core == spec.baseline and g.results]
    if not base:
        return None
    same = [g for g in base if g.seq_len == seq_len]
    if same:
        return same[0]
    return max(base, key=lambda g: statistics.fmean(r.final_return or 0.0 for r in g.results))


def summarize(
    spec: SuiteSpec, cells: Sequence[Cell], results: dict[str, CellResult], *,
    scale: str, command: str,
) -> dict[str, Any]:  # fmt: skip
    """The ``results.json`` data (see the module docstring)."""
    tasks: dict[str, Any] = {}
    for task, groups in group_results(spec, cells, results).items():
        t = spec.tasks[task]
        margin = spec.task_margin(task)
        rows = []
        for g in groups:
            final = g.stat("final_return")
            base = _baseline(spec, groups, g.seq_len)
            base_final = base.stat("final_return") if base is not None else None
            over = None
            if final and base_final and g.core != spec.baseline:
                over = final["mean"] - base_final["mean"]
            reached = [r.steps_to_threshold for r in g.results if r.steps_to_threshold is not None]
            rows.append({
                "core": g.core,
                "core_name": g.core_name,
                "seq_len": g.seq_len,
                "baseline": g.core == spec.baseline,
                "seeds": g.seeds,
                "seeds_ok": len(g.results),
                "seeds_failed": [r.seed for r in g.failed],
                "seeds_missing": g.missing,
                "final_return": final,
                "final_train_return": g.stat("final_train_return"),
                "success_rate": g.stat("success_rate"),
                "sampled_return": g.stat("sampled_return"),
                "sampled_success_rate": g.stat("sampled_success_rate"),
                "steps_to_threshold": {
                    "reached": len(reached),
                    "of": len(g.results),
                    "mean": statistics.fmean(reached) if reached else None,
                    "per_seed": [r.steps_to_threshold for r in g.results],
                },
                "env_steps_per_s": g.stat("env_steps_per_s"),
                "wall_time_s": g.stat("wall_time_s"),
                "baseline_seq_len": base.seq_len if base is not None else None,
                "margin_over_baseline": over,
                "beats_baseline": None if over is None else over >= margin,
            })  # fmt: skip
        tasks[task] = {
            "description": t.description,
            "chance": t.chance,
            "threshold": t.threshold,
            "margin": margin,
            "references": [r.model_dump() for r in t.references],
            "cells": rows,
        }
    failures = [
        {"id": r.id, "error": r.error} for r in results.values() if r.status != "ok"
        if r.key in {c.key for c in cells}
    ]  # fmt: skip
    return {
        "suite": spec.name,
        "scale": scale,
        "command": command,
        "baseline": spec.baseline,
        "confidence": 0.95,
        "tasks": tasks,
        "failures": failures,
    }


def _pm(stat: dict[str, Any] | None, spec: str = ".2f") -> str:
    if not stat:
        return "-"
    if stat["ci95"] is None:
        return f"{format(stat['mean'], spec)} (n={stat['n']})"
    half = (stat["ci95"][1] - stat["ci95"][0]) / 2
    return f"{format(stat['mean'], spec)} ± {format(half, spec)}"


def write_report(data: dict[str, Any], spec: SuiteSpec, path: Path, pngs: dict[str, Path]) -> Path:
    """``report.md``: the command, then one table (and figure) per task."""
    lines = [
        f"# Learning suite `{data['suite']}` ({data['scale']} scale)",
        "",
        "```",
        data["command"],
        "```",
        "",
    ]
    if spec.description:
        lines += [spec.description.strip(), ""]
    lines += [
        "Final return: greedy evaluation return per seed (training return when a task has no "
        "evaluation), mean ± half-width of the 95% Student-t interval over seeds. Margin: mean "
        f"minus the memoryless baseline's (`{data['baseline']}`) mean; **pass** when the margin "
        "is at least the task's stated margin. Steps to threshold: seeds whose training return "
        "reached the threshold, and their mean env steps. Sampled: the success rate (else the "
        "return) of the same episodes with actions sampled from the policy, the policy PPO "
        "trains; a greedy policy can stall where it does not. Curves: training return; a seed "
        "that stopped early because its training return reached the task's target "
        "(`stop.episode_return_mean`) is held at its last value.",
        "",
    ]
    for task, t in data["tasks"].items():
        lines += [f"## {task}", ""]
        if t["description"]:
            lines += [t["description"], ""]
        lines += [
            f"chance {t['chance']:g}, threshold {t['threshold']:g}, required margin "
            f"{t['margin']:g}"
            + "".join(f"; {r['label']}: {r['value']:g}" for r in t["references"]),
            "",
            "| core | seq len | seeds | final return | success | sampled | steps to threshold | "
            "steps/s | margin | beats baseline |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|:---:|",
        ]
        for row in t["cells"]:
            reach = row["steps_to_threshold"]
            steps = f"{reach['reached']}/{reach['of']}"
            if reach["mean"] is not None:
                steps += f" @ {reach['mean']:,.0f}"
            seeds = f"{row['seeds_ok']}/{len(row['seeds'])}"
            if row["seeds_failed"]:
                seeds += f" ({len(row['seeds_failed'])} failed)"
            if row["seeds_missing"]:
                seeds += f" ({len(row['seeds_missing'])} not run)"
            margin = (
                "-"
                if row["margin_over_baseline"] is None
                else f"{row['margin_over_baseline']:+.2f}"
            )
            verdict = {None: "-", True: "pass", False: "**FAIL**"}[row["beats_baseline"]]
            if row["baseline"]:
                verdict = "(baseline)"
            sps = "-" if not row["env_steps_per_s"] else f"{row['env_steps_per_s']['mean']:,.0f}"
            sampled = _pm(row.get("sampled_return"))
            if row.get("sampled_success_rate"):
                sampled = _pm(row["sampled_success_rate"], ".0%")
            lines.append(
                f"| {row['core']} | {row['seq_len']} | {seeds} | {_pm(row['final_return'])} | "
                f"{_pm(row['success_rate'], '.0%') if row['success_rate'] else '-'} | {sampled} | "
                f"{steps} | "
                f"{sps} | {margin} | {verdict} |"
            )
        if task in pngs:
            lines += ["", f"![{task}]({pngs[task].name})"]
        lines.append("")
    if data["failures"]:
        lines += ["## Failed cells", ""]
        for item in data["failures"]:
            last = (item["error"] or "").strip().splitlines()
            lines.append(f"- `{item['id']}`: {last[-1] if last else '?'}")
        lines.append("")
    path.write_text("\n".join(lines))
    return path


def plot_task(task: str, spec: SuiteSpec, groups: list[Group], path: Path) -> Path | None:
    """Mean ± 95% CI training-return curves over seeds; baseline dashed, chance and references
    as horizontal lines. None when no group has a curve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = spec.tasks[task]
    lens = sorted({g.seq_len for g in groups})
    # Colour per core, line style per seq len; the baseline black and dashed.
    styles = ["-", (0, (1, 1)), "-.", (0, (3, 1, 1, 1, 1, 1))]
    base_styles = ["--", (0, (6, 2, 1, 2)), (0, (2, 3))]
    colors = {c: f"C{i % 10}" for i, c in enumerate(c for c in spec.cores if c != spec.baseline)}
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    drawn = 0
    for g in groups:
        steps, mean, low, high = curves_on_grid(
            [r.curve for r in g.results], held=[r.stopped_at_target for r in g.results]
        )
        if not len(steps):
            continue
        label = f"{g.core} L{g.seq_len}" if len(lens) > 1 else g.core
        k = lens.index(g.seq_len)
        if g.core == spec.baseline:
            color, style, alpha = "black", base_styles[k % len(base_styles)], 0.08
        else:
            color, style, alpha = colors[g.core], styles[k % len(styles)], 0.18
        ax.plot(steps, mean, label=f"{label} (n={len(g.results)})", linewidth=1.8, color=color,
                linestyle=style)  # fmt: skip
        ax.fill_between(steps, low, high, color=color, alpha=alpha, linewidth=0)
        drawn += 1
    if not drawn:
        plt.close(fig)
        return None
    ax.axhline(t.chance, color="grey", linestyle=":", linewidth=1.2, label=f"chance ({t.chance:g})")
    for ref in t.references:
        ax.axhline(ref.value, color="tab:purple", linestyle="-.", linewidth=1, label=ref.label)
    ax.set_xlabel("env steps")
    ax.set_ylabel("training episode return (mean ± 95% CI over seeds)")
    ax.set_title(f"{spec.name}: {task}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2 if len(groups) > 6 else 1)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_outputs(
    spec: SuiteSpec, cells: Sequence[Cell], results: dict[str, CellResult], out: Path, *,
    scale: str, command: str,
) -> dict[str, Path]:  # fmt: skip
    """Write results.json, report.md and ``<task>.png`` under ``out``; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    data = summarize(spec, cells, results, scale=scale, command=command)
    paths = {"results": out / "results.json"}
    paths["results"].write_text(json.dumps(data, indent=1, default=_json_default))
    pngs: dict[str, Path] = {}
    for task, groups in group_results(spec, cells, results).items():
        png = plot_task(task, spec, groups, out / f"{task}.png")
        if png is not None:
            pngs[task] = png
    paths["report"] = write_report(data, spec, out / "report.md", pngs)
    paths.update({f"png:{k}": v for k, v in pngs.items()})
    return paths


def _json_default(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    return str(value)
