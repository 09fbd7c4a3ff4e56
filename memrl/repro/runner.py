"""Running a suite's cells: skip the finished ones, run the rest K at a time, record each.

Each cell is one Ray task (``--jobs K`` in flight; on a cluster they spread over its nodes),
or, with ``executor="local"``, a call in this process (tests, debugging). A cell that raises
is recorded as failed with its traceback and reported; the suite goes on. Every finished cell
is written at once to ``<out>/cells/<cell file>.json``, so an interrupted suite resumes where
it stopped; failed cells are retried on the next run.
"""

from __future__ import annotations

import fnmatch
import logging
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from memrl.repro.cell import CellResult, run_cell
from memrl.repro.cells import Cell

log = logging.getLogger("memrl.repro")

Runner = Callable[[Cell], CellResult]
CELLS_DIR = "cells"


@dataclass
class RunSummary:
    """Cells of one invocation: reused from disk, run now (ok / failed)."""

    cells: list[Cell]
    results: dict[str, CellResult]  # by cell key, finished and failed
    reused: int
    ran: int
    failed: int


def select(cells: Iterable[Cell], pattern: str | None) -> list[Cell]:
    """Cells whose id (``task/core/L<n>/s<seed>``) matches the glob(s) (comma-separated)."""
    if not pattern:
        return list(cells)
    globs = [p.strip() for p in pattern.split(",") if p.strip()]
    return [c for c in cells if any(fnmatch.fnmatchcase(c.id, g) for g in globs)]


def load_finished(out: Path) -> dict[str, CellResult]:
    """Results on disk by key (unreadable files are logged and ignored: they rerun)."""
    found: dict[str, CellResult] = {}
    for path in sorted((out / CELLS_DIR).glob("*.json")):
        try:
            import json

            result = CellResult.from_dict(json.loads(path.read_text()))
        except (ValueError, TypeError, KeyError) as err:
            log.warning("ignoring unreadable cell file %s: %s", path, err)
            continue
        found[result.key] = result
    return found


def _guarded(runner: Runner, cell: Cell) -> CellResult:
    """``runner(cell)``, an exception turned into a failed result (runs inside the Ray task)."""
    start = time.perf_counter()
    try:
        return runner(cell)
    except Exception:  # noqa: BLE001 - any error of a cell is that cell's result
        return CellResult.failed(cell, traceback.format_exc(), time.perf_counter() - start)


def _describe(result: CellResult) -> str:
    if result.status != "ok":
        last = (result.error or "").strip().splitlines()
        return f"[red]FAILED[/red] after {result.wall_time_s:.0f} s: {last[-1] if last else '?'}"
    ret = "-" if result.final_return is None else f"{result.final_return:.3f}"
    success = "" if result.success_rate is None else f", success {result.success_rate:.0%}"
    sps = "-" if result.env_steps_per_s is None else f"{result.env_steps_per_s:,.0f}"
    reach = result.steps_to_threshold
    return (
        f"return {ret}{success}, {result.env_steps:,} steps, threshold at "
        f"{'never' if reach is None else f'{reach:,}'}, {sps} steps/s, {result.wall_time_s:.0f} s"
    )


def _paper_resources(cells: list[Cell], jobs: int) -> list[Cell]:
    """Resolve "auto" resources of paper-scale cells against 1/jobs of the cluster each."""
    from memrl.config import resolve_resources
    from memrl.train import cluster_resources

    cpus, gpus = cluster_resources()
    out = []
    for cell in cells:
        cfg = cell.train_config()
        res = resolve_resources(cfg.resources, cpus=max(1.0, cpus / jobs), gpus=gpus / jobs)
        data = dict(cell.config)
        data["resources"] = {**data["resources"], **res.model_dump()}
        out.append(_replace_config(cell, data))
    return out


def _replace_config(cell: Cell, data: dict[str, Any]) -> Cell:
    from dataclasses import replace

    return replace(cell, config=data)


def _gpus(cell: Cell) -> float:
    res = cell.config["resources"]
    learners = res.get("num_learners")
    per = res.get("num_gpus_per_learner")
    # The learner runs in the cell's own process only when there are no remote learners.
    return float(per) if learners == 0 and isinstance(per, (int, float)) else 0.0


def execute(
    todo: list[Cell],
    record: Callable[[CellResult, int], None],
    *,
    runner: Runner,
    jobs: int,
    executor: Literal["ray", "local"],
) -> None:
    """Run ``todo``, ``jobs`` at a time, calling ``record(result, index)`` as each finishes."""
    total = len(todo)
    if executor == "local":
        for i, cell in enumerate(todo, 1):
            log.info("[%d/%d] start %s", i, total, cell.id)
            record(_guarded(runner, cell), i)
        return
    import ray

    remote = ray.remote(max_retries=0)(_guarded)
    pending: dict[Any, tuple[Cell, int]] = {}
    queue = list(enumerate(todo, 1))
    try:
        while queue or pending:
            while queue and len(pending) < jobs:
                i, cell = queue.pop(0)
                ref = remote.options(num_cpus=1, num_gpus=_gpus(cell)).remote(runner, cell)
                pending[ref] = (cell, i)
                log.info("[%d/%d] start %s", i, total, cell.id)
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                cell, i = pending.pop(ref)
                try:
                    result = ray.get(ref)
                except Exception as err:  # noqa: BLE001 - a crashed worker fails its cell only
                    result = CellResult.failed(cell, f"{type(err).__name__}: {err}")
                record(result, i)
    finally:
        for ref in pending:  # interrupted: do not leave cells training in the background
            ray.cancel(ref, force=True)


def run_cells(
    cells: list[Cell],
    out: Path,
    *,
    runner: Runner = run_cell,
    jobs: int | None = None,
    executor: Literal["ray", "local"] = "ray",
) -> RunSummary:
    """Run every cell of ``cells`` not finished under ``out`` (see the module docstring).

    With ``executor="ray"`` a local Ray is started (memrl.train.init_ray: sized to the machine,
    token auth on) unless one is connected, and stopped afterwards if this call started it.
    ``jobs`` (cells in flight) defaults to the cluster's CPUs (1 for the local executor).
    """
    finished = load_finished(out)
    done = {c.key: finished[c.key] for c in cells if finished.get(c.key, None) is not None}
    done = {k: r for k, r in done.items() if r.status == "ok"}
    todo = [c for c in cells if c.key not in done]
    started_ray = False
    if todo and executor == "ray":
        from memrl.train import cluster_resources, init_ray

        started_ray = init_ray(todo[0].train_config())
        try:
            jobs = jobs or max(1, int(cluster_resources()[0]))
            if todo[0].scale == "paper":
                todo = _paper_resources(todo, jobs)
        except BaseException:
            if started_ray:
                import ray

                ray.shutdown()
            raise
    jobs = jobs or 1
    log.info(
        "%d cells: %d finished before (skipped), %d to run, %d at a time",
        len(cells), len(done), len(todo), jobs,
    )  # fmt: skip
    results: dict[str, CellResult] = dict(done)
    failed = 0
    by_key = {c.key: c for c in todo}

    def record(result: CellResult, index: int) -> None:
        nonlocal failed
        cell = by_key[result.key]
        result.save(out / CELLS_DIR, cell.filename)
        results[result.key] = result
        failed += result.status != "ok"
        level = logging.INFO if result.status == "ok" else logging.ERROR
        log.log(level, "[%d/%d] done  %s: %s", index, len(todo), cell.id, _describe(result),
                extra={"markup": True})  # fmt: skip

    try:
        execute(todo, record, runner=runner, jobs=jobs, executor=executor)
    finally:
        if started_ray:
            import ray

            ray.shutdown()
    return RunSummary(cells, results, reused=len(done), ran=len(todo), failed=failed)


__all__ = ["RunSummary", "execute", "load_finished", "run_cells", "select"]
