"""One cell's run and its result: the single place the suite calls memrl's training code.

:func:`run_cell` trains the cell's config with ``memrl.loop.train`` (one process at cpu scale: no
remote env runners), then scores the final checkpoint greedily with ``memrl.evaluate.evaluate``
over the task's ``eval_episodes`` (seed = training seed + 1000). A cell's *final return* is that
greedy mean episode return; with ``eval_episodes: 0`` it is the last iteration's training return
(RLlib's mean over recent episodes). A PPO cell is also scored on the same env seeds with actions
sampled from its policy (``memrl eval --explore``), the policy PPO trains: a greedy policy can
stall where the sampled one does not (horizon suite, T-Maze 32, LSTM from 64-step sequences, seed
2: sampled, 61% success; greedy, every episode a timeout, walking into the wall at the junction,
where "right", the corridor's action, kept probability 0.4-0.9). *Env steps to threshold* is the
env-step count of the first iteration whose training return mean reached the task's threshold; *env
steps/s* is env steps over training time (evaluation excluded).

An interrupted cell (a killed process, a lost node) continues from its newest checkpoint when
rerun, if that checkpoint's config is the cell's own (same cell key); its curve then joins the
logged iterations up to the checkpoint with the ones trained after it. The resumed part draws
other random numbers than an unbroken run would. Anything else left in the cell's folders (a run
of another config under the same cell name, checkpoints none of which verifies) is moved to
``<out>/superseded/<time>/`` before the cell starts afresh.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from rich.console import Console

from memrl.config.run import StopConfig
from memrl.repro.cells import Cell
from memrl.repro.stats import first_crossing

log = logging.getLogger("memrl.repro")


@dataclass
class CellResult:
    """What one cell leaves behind (written as JSON, read back on resume)."""

    id: str
    key: str
    task: str
    core: str
    core_name: str
    seq_len: int
    seed: int
    scale: str
    status: Literal["ok", "failed"]
    error: str | None = None
    curve: list[tuple[int, float | None]] = field(default_factory=list)  # (env steps, return)
    iterations: int = 0
    env_steps: int = 0
    train_time_s: float = 0.0
    wall_time_s: float = 0.0
    env_steps_per_s: float | None = None
    final_train_return: float | None = None
    evaluation: dict[str, Any] | None = None  # memrl.evaluate's summary of the greedy episodes
    sampled_evaluation: dict[str, Any] | None = None  # the same, actions sampled (PPO only)
    final_return: float | None = None
    success_rate: float | None = None
    steps_to_threshold: int | None = None
    sampled_return: float | None = None
    sampled_success_rate: float | None = None
    run_dir: str | None = None
    checkpoint: str | None = None
    stopped_at_target: bool = False  # stopped early: the training return reached the target
    resumed_at: int | None = None  # the iteration of the checkpoint an interrupted run resumed

    @classmethod
    def from_run(
        cls, cell: Cell, *, curve: list[tuple[int, float | None]], iterations: int,
        env_steps: int, train_time_s: float, wall_time_s: float,
        evaluation: dict[str, Any] | None = None, run_dir: str | None = None,
        checkpoint: str | None = None, sampled_evaluation: dict[str, Any] | None = None,
        resumed_at: int | None = None,
    ) -> CellResult:  # fmt: skip
        """A finished cell; the derived numbers computed by the module docstring's rules."""
        curve = [(int(s), None if v is None or math.isnan(v) else float(v)) for s, v in curve]
        reported = [v for _, v in curve if v is not None]
        last = reported[-1] if reported else None
        final = evaluation["return_mean"] if evaluation else last
        return cls(
            **_identity(cell),
            status="ok",
            curve=curve,
            iterations=iterations,
            env_steps=env_steps,
            train_time_s=train_time_s,
            wall_time_s=wall_time_s,
            env_steps_per_s=env_steps / train_time_s if train_time_s > 0 else None,
            final_train_return=last,
            evaluation=evaluation,
            final_return=final,
            success_rate=evaluation.get("success_rate") if evaluation else None,
            steps_to_threshold=first_crossing(curve, cell.threshold),
            sampled_evaluation=sampled_evaluation,
            sampled_return=sampled_evaluation["return_mean"] if sampled_evaluation else None,
            sampled_success_rate=(
                sampled_evaluation.get("success_rate") if sampled_evaluation else None
            ),
            run_dir=run_dir,
            checkpoint=checkpoint,
            stopped_at_target=StopConfig(**cell.config["stop"]).return_target_met(
                [v for _, v in curve]
            ),
            resumed_at=resumed_at,
        )

    @classmethod
    def failed(cls, cell: Cell, error: str, wall_time_s: float = 0.0) -> CellResult:
        return cls(**_identity(cell), status="failed", error=error, wall_time_s=wall_time_s)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CellResult:
        data = dict(data)
        data["curve"] = [tuple(p) for p in data.get("curve", [])]
        return cls(**data)

    def save(self, folder: Path, filename: str) -> Path:
        """Write atomically (a killed run leaves no half-written cell)."""
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / filename
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(self.to_dict(), indent=1))
        tmp.replace(path)
        return path


def _identity(cell: Cell) -> dict[str, Any]:
    return dict(
        id=cell.id, key=cell.key, task=cell.task, core=cell.core, core_name=cell.core_name,
        seq_len=cell.seq_len, seed=cell.seed, scale=cell.scale,
    )  # fmt: skip


def _train(cfg: Any, console: Console, resume: Path | None = None) -> Any:
    """The training call: memrl's one training loop (memrl.loop.train)."""
    from memrl.loop import train

    return train(cfg, resume=resume, console=console)


def _folders(cfg: Any) -> list[Path]:
    """What a cell's run leaves under its output_dir: metrics, checkpoints, replay shards."""
    return [cfg.run_dir, cfg.checkpoint_dir, cfg.replay_checkpoint_dir]


def resume_point(cell: Cell, cfg: Any) -> tuple[Path | None, str | None]:
    """``(checkpoint to continue from, None)``, or ``(None, why the cell's folders are not
    resumable)``; ``(None, None)`` when the cell left nothing behind."""
    from memrl import checkpoints
    from memrl.repro.cells import cell_key

    if not any(folder.exists() and any(folder.iterdir()) for folder in _folders(cfg)):
        return None, None
    if not any(cfg.checkpoint_dir.glob("iter_*")):
        return None, "a run stopped before its first checkpoint"
    try:
        found = checkpoints.find_verified(cfg.checkpoint_dir)
    except (FileNotFoundError, checkpoints.CheckpointError) as err:
        return None, f"no checkpoint verifies ({err})"
    theirs = cell_key(checkpoints.load_config_data(found), cell.threshold, cell.eval_episodes)
    if theirs != cell.key:
        return None, f"its checkpoint {found.name} is of another config (key {theirs[:12]})"
    return found, None


def set_aside(cfg: Any, why: str) -> Path:
    """Move the cell's folders to ``<output_dir>/superseded/<time>/`` (nothing is deleted)."""
    root = Path(cfg.output_dir).expanduser().resolve()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    dest = root / "superseded" / stamp
    for folder in _folders(cfg):
        if folder.exists():
            target = dest / folder.relative_to(root)
            target.parent.mkdir(parents=True, exist_ok=True)
            folder.rename(target)
    (dest / f"{cfg.name}.why.txt").write_text(why + "\n")
    return dest


def run_cell(cell: Cell) -> CellResult:
    """Train and evaluate one cell (see the module docstring). Errors propagate."""
    from memrl import checkpoints
    from memrl.evaluate import evaluate
    from memrl.progress import read_metrics

    start = time.perf_counter()
    cfg = cell.train_config()
    resume, why = resume_point(cell, cfg)
    if why is not None:
        moved = set_aside(cfg, why)
        log.warning("%s: %s; its folders moved to %s, starting afresh", cell.id, why, moved)
    resumed_at = checkpoints.load_state(resume).iteration if resume is not None else None
    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    with (cfg.run_dir / "progress.log").open("a" if resume else "w") as stream:  # progress lines
        console = Console(file=stream, soft_wrap=True, width=200)
        if resume is not None:
            console.print(f"resuming from {resume} (iteration {resumed_at})", highlight=False)
        result = _train(cfg, console, resume)
    evaluation = sampled = None
    if cell.eval_episodes > 0:
        if result.checkpoint is None:
            raise RuntimeError(f"{cell.id}: training wrote no checkpoint to evaluate")
        evaluation = evaluate(result.checkpoint, cell.eval_episodes).summary()
        if cfg.algo == "ppo":
            sampled = evaluate(result.checkpoint, cell.eval_episodes, explore=True).summary()
    if resume is None:
        curve = [(m.env_steps, m.episode_return_mean) for m in result.history]
    else:  # the iterations before the checkpoint come from the run's log (rewound to it)
        curve = [(m["env_steps"], m["episode_return_mean"]) for m in read_metrics(cfg.run_dir)]
    return CellResult.from_run(
        cell,
        curve=curve,
        iterations=result.iterations,
        env_steps=result.env_steps,
        train_time_s=result.time_s,
        wall_time_s=time.perf_counter() - start,
        evaluation=evaluation,
        sampled_evaluation=sampled,
        run_dir=str(result.run_dir),
        checkpoint=str(result.checkpoint) if result.checkpoint else None,
        resumed_at=resumed_at,
    )
