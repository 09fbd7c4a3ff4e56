"""The cells of a suite: one (task, core, seq len, seed) each, with its validated config.

A cell's ``key`` hashes what decides its outcome (the resolved config without its bookkeeping
keys: name, output folders, resource placement, logging and checkpoint cadence, and the sections
of algorithms other than its own; plus the evaluation episodes and the threshold): a rerun with
the same key reuses the finished cell's JSON, a changed hyperparameter makes a new cell.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from memrl.config import ConfigError, TrainConfig, config_from_dict, load_config
from memrl.config.schema import ALGOS
from memrl.repro.suite import Scale, SuiteError, SuiteSpec

# At cpu scale a cell is one process (sample and learn in the Ray task): --jobs K then means K
# cells on K CPUs. A suite's own `overrides` may change these.
CPU_CELL_DEFAULTS: dict[str, Any] = {
    "resources.num_env_runners": 0,
    "resources.num_learners": 0,
    "resources.num_gpus_per_learner": 0,
}
# Keys that do not change what a cell learns (left out of its key).
_UNHASHED_TOP = ("name", "output_dir", "logging", "checkpoint")
_UNHASHED_RESOURCES = ("address", "num_cpus", "num_env_runners", "num_learners",
                       "num_gpus_per_learner")  # fmt: skip
# Sections only some algorithms read; the others' are left out of the key, so that a field
# added to, say, the qtransformer section does not rerun every finished PPO cell.
_ALGO_SECTIONS: dict[str, tuple[str, ...]] = {
    **{algo: (algo,) for algo in ALGOS},
    "replay": ("r2d2", "td3"),
    "data": ("qtransformer",),
}


def override(key: str, value: Any) -> str:
    """``key=value`` that memrl.config parses back to ``value`` (JSON is YAML)."""
    return f"{key}={json.dumps(value)}"


@dataclass(frozen=True)
class Cell:
    """One training run of the matrix. ``config`` is the validated config's plain data."""

    suite: str
    task: str
    core: str  # the suite's core label (e.g. gtrxl64)
    core_name: str  # the memrl core (e.g. gtrxl)
    seq_len: int
    seed: int
    scale: str
    threshold: float
    eval_episodes: int
    config: dict[str, Any]
    key: str

    @property
    def id(self) -> str:
        """``task/core/L<seq_len>/s<seed>`` (what --cells matches)."""
        return f"{self.task}/{self.core}/L{self.seq_len}/s{self.seed}"

    @property
    def filename(self) -> str:
        return f"{self.task}__{self.core}__L{self.seq_len}__s{self.seed}__{self.key[:12]}.json"

    def train_config(self) -> TrainConfig:
        return config_from_dict(self.config, check_env=False, source=self.id)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def cell_key(config: dict[str, Any], threshold: float, eval_episodes: int) -> str:
    """sha256 of what decides a cell's outcome (see the module docstring)."""
    algo = config.get("algo", "ppo")
    data = {
        k: v
        for k, v in config.items()
        if k not in _UNHASHED_TOP and algo in _ALGO_SECTIONS.get(k, (algo,))
    }
    data["resources"] = {
        k: v for k, v in (config.get("resources") or {}).items() if k not in _UNHASHED_RESOURCES
    }
    blob = json.dumps(
        {"config": data, "threshold": threshold, "eval_episodes": eval_episodes},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


# Iterations between a cell's checkpoints: an interrupted cell continues from its newest one
# (memrl.repro.cell); a save took 0.05-0.08 s for the paper suite's T-Maze GTrXL and AReLiT.
CHECKPOINT_EVERY = 25


def _bookkeeping(name: str, seed: int, out: Path, checkpoint_every: int) -> list[str]:
    # One folder per cell; the newest checkpoint only (the greedy evaluation reads the last).
    return [
        override("name", name),
        override("seed", seed),
        override("output_dir", str(out.resolve())),
        override("checkpoint.every", checkpoint_every),
        override("checkpoint.keep", 1),
        override("checkpoint.at_end", True),
    ]


def cpu_overrides(spec: SuiteSpec, task: str, core: str, seq_len: int) -> list[str]:
    """The cpu-scale overrides of one cell, in the order the suite docstring gives."""
    t, c = spec.tasks[task], spec.cores[core]
    items = {**CPU_CELL_DEFAULTS, **spec.overrides, **t.overrides}
    if t.timesteps is not None:
        items.update({"stop.timesteps": t.timesteps, "stop.iterations": None, "stop.time_s": None})
    out = [override(k, v) for k, v in items.items()]
    out.append(override("model.core", c.core or core))
    out.append(override("model.core_kwargs", dict(c.core_kwargs)))
    out += [override(k, v) for k, v in c.overrides.items()]
    out += [override(k, v) for k, v in t.core_overrides.get(core, {}).items()]
    out.append(override("model.max_seq_len", seq_len))
    return out


def plan_cells(
    spec: SuiteSpec, scale: Scale, seeds: int, out: Path, checkpoint_every: int = CHECKPOINT_EVERY
) -> list[Cell]:
    """Every cell of ``spec`` at ``scale`` for seeds 0..seeds-1, configs validated.

    ``out`` is the suite's results folder (each cell's output_dir: memrl writes its metrics to
    ``out/runs/<name>`` and its checkpoints, every ``checkpoint_every`` iterations (0: only the
    last) and at the end, to ``out/checkpoints/<name>``). At paper scale only the
    (task, core) pairs with a ``paper`` config exist, each at its config's own max_seq_len.
    Raises SuiteError listing every cell whose config is invalid (the config's own messages).
    """
    assert spec.name is not None
    cells: list[Cell] = []
    problems: list[str] = []
    for task_label, task in spec.tasks.items():
        for core in spec.task_cores(task_label):
            if scale == "paper":
                if core not in task.paper:
                    continue
                variants = [(None, task.paper[core], [])]
            else:
                variants = [
                    (n, task.config, cpu_overrides(spec, task_label, core, n))
                    for n in spec.task_seq_lens(task_label)
                ]
            for seq_len, config_name, overrides in variants:
                for seed in range(seeds):
                    name = f"{task_label}-{core}-L{seq_len or 'cfg'}-s{seed}"
                    extra = _bookkeeping(name, seed, out, checkpoint_every)
                    try:
                        cfg = load_config(config_name, [*overrides, *extra])
                    except ConfigError as err:
                        problems.append(f"tasks.{task_label} x cores.{core}: {err}")
                        break
                    if seq_len is None:
                        length = cfg.model.max_seq_len
                        cfg = load_config(
                            config_name,
                            [*extra, override("name", f"{task_label}-{core}-L{length}-s{seed}")],
                        )
                    data = cfg.to_yaml_dict()
                    cells.append(
                        Cell(
                            suite=spec.name,
                            task=task_label,
                            core=core,
                            core_name=cfg.model.core,
                            seq_len=cfg.model.max_seq_len,
                            seed=seed,
                            scale=scale,
                            threshold=task.threshold,
                            eval_episodes=task.eval_episodes,
                            config=data,
                            key=cell_key(data, task.threshold, task.eval_episodes),
                        )
                    )
    if problems:
        raise SuiteError(f"suite {spec.name!r}: invalid cells:\n" + "\n".join(problems))
    return cells
