"""``memrl bench offline``: Q-Transformer and behaviour cloning on D4RL-style datasets of memrl's
own agents, on Pendulum-P (velocities hidden, 1-D torque) and PointGoalMemory (2-D, goal shown
only at the first step).

Per task:

1. **Behaviour policies.** A recurrent TD3 (GRU) is trained in this process
   (:func:`memrl.rllib.td3.local.train_local`, the loop of the TD3 learning test), its
   deterministic actor evaluated 8 times along the way and each evaluation's weights
   kept. *expert* = the best evaluation; *medium* = an earlier one whose score is nearest
   ``--medium-fraction`` of the way from random to expert (D4RL's "medium" is an early-stopped
   policy). Both are saved as ordinary memrl checkpoints (config, manifest, RLlib state), so
   ``memrl eval`` and ``memrl data collect`` read them. ``--medium TASK=CKPT`` /
   ``--expert TASK=CKPT`` use given checkpoints instead (no training when both are given).
2. **Datasets** (``memrl data collect`` / ``memrl data merge``'s code): *random* (uniform
   actions), *medium* and *expert* (each checkpoint with Gaussian noise ``--behaviour-noise``
   through RLlib's env runner, :mod:`memrl.rollout`), *medium-expert* (both, concatenated, as
   D4RL) and, with ``--datasets``, *random-medium*.
3. **Learners.** Q-Transformer (:func:`memrl.rllib.qtransformer.local.train_offline`, the
   task's ``configs/qtransformer`` config) and behaviour cloning (:mod:`memrl.rllib.bc`, the
   same encoder and GRU, the Q-Transformer's batch, sequence length, burn-in, learning rate and
   head sizes) each train ``--updates`` updates on each dataset from scratch, and are evaluated
   greedily on the same ``--eval-episodes`` env seeds (other than the datasets').
4. **Learner speed.** Q-Transformer learner timesteps/s (sequence steps per second of update
   time, sampling excluded) at a batch of 256 sequences, on the CPU and on CUDA when present.

``behaviour_return`` is the dataset's mean episode return; ``*_normalized`` is D4RL's score
``100 (R - R_random) / (R_expert - R_random)`` with the random and expert datasets' returns.
PointGoalMemory's Q-Transformer and BC replay every training sequence from its episode's start
(burn-in 50 = the episode length): the goal is only in the first observation.

Defaults: TD3 for 24k env steps (each task), 50 / 200 episodes (10k steps) per collected
dataset, 5000 updates per learner and dataset, 10 evaluation episodes: about 35 minutes on 2
CPU cores (TD3 and collection ~12, the 16 learner runs ~22). At 1000
updates (the first full run) Pendulum-P's Q-Transformer had not yet fitted its returns.
``--quick``: about 2.

RLlib's CQL/IQL are not run (see :data:`PEERS_NOTE`).

    memrl bench offline --out results/offline.json [--quick] [--tasks pendulum-p,pointgoal]
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from memrl.bench.offline_behaviour import (
    pick_medium_expert,
    save_td3_checkpoint,
    td3_config,
    train_td3_snapshots,
)
from memrl.bench.offline_learners import (
    EVAL_SEED,
    TIMING_BATCH,
    dataset_return,
    normalized,
    time_learner,
    train_and_play,
)
from memrl.bench.report import markdown_table, write_report

log = logging.getLogger(__name__)

DATASETS = ("random", "medium", "expert", "medium-expert", "random-medium")
DEFAULT_DATASETS = ("random", "medium", "expert", "medium-expert")
MIXES = {"medium-expert": ("medium", "expert"), "random-medium": ("random", "medium")}

PEERS_NOTE = (
    "RLlib's CQL and IQL (memoryless peers) are not run. Checked with RLlib 2.60: its offline API "
    "reads Parquet through Ray Data with one transition per row (obs, actions, rewards, new_obs, "
    "terminateds, truncateds, eps_id); memrl's Minari-layout files keep T + 1 observations per "
    "episode, and new_obs (the next row) is a shift input_read_schema cannot express, so each "
    "dataset must first be rewritten in RLlib's layout (a few lines of pyarrow). With that, CQL "
    "on a Pendulum-P dataset stalled on a 2-CPU Ray with the default Ray Data settings (the "
    "OfflinePreLearner actors ask for 2 CPUs beside the read tasks), and with map_batches_kwargs "
    "concurrency 1, num_cpus 0.5 it ran at about 2 s per update of 256 transitions (Ray Data's "
    "per-batch overhead, on the loaded 2-core machine this bench was written on): the updates "
    "this bench gives Q-Transformer would take longer than the whole bench, per dataset. Both "
    "are memoryless as well (an MLP on the current observation), which on these tasks measures "
    "what hiding the velocity or the goal costs more than offline RL."
)


@dataclass(frozen=True)
class OfflineTask:
    """One task: the TD3 behaviour config (overrides on :data:`TD3_OVERRIDES`), the
    Q-Transformer config the offline learners use, and sizes (full, ``--quick``)."""

    name: str
    env_id: str
    td3_overrides: tuple[str, ...]
    qt_config: str
    qt_overrides: tuple[str, ...]
    td3_steps: int
    episodes: int
    quick_episodes: int


TASKS: dict[str, OfflineTask] = {
    "pendulum-p": OfflineTask(
        name="pendulum-p",
        env_id="memrl/Pendulum-P-v0",
        td3_overrides=("name=offline-td3-pendulum-p",),
        qt_config="qtransformer/pendulum_p_gru",
        qt_overrides=(),
        td3_steps=24_000,
        episodes=50,  # 10k steps per dataset
        quick_episodes=3,
    ),
    "pointgoal": OfflineTask(
        name="pointgoal",
        env_id="memrl/PointGoalMemory-v0",
        # Whole episodes (chunks of the 50-step episode, no overlap, no burn-in: every sequence
        # starts at the goal cue from a zero state, as Ni et al. train), gamma 0.95, noise 0.3.
        # With chunks of 2 + 48 steps overlapping by 25 (half the sequences starting mid-episode
        # from a stored state with a 2-step burn-in) the GRU TD3 never beat waiting at the centre
        # (return ~20; evaluations 7-21 up to 48k env steps); whole episodes reached 30 at 12k
        # and 38 at 24k (optimal ~46; with one goal, no memory needed, 48 at 4k).
        td3_overrides=(
            "name=offline-td3-pointgoal",
            "task.env_name=memrl/PointGoalMemory-v0",
            "evaluation.success_threshold=25.0",
            "td3.updates_per_iteration=2",
            "td3.exploration_noise=0.3",
            "td3.gamma=0.95",
            "replay.burn_in=0",
            "replay.seq_len=50",
            "replay.chunk_overlap=0",
        ),
        qt_config="qtransformer/pointgoal_gru",
        qt_overrides=("qtransformer.burn_in=50", "qtransformer.seq_len=10"),
        td3_steps=24_000,
        episodes=200,  # 10k steps per dataset
        quick_episodes=8,
    ),
}


# --- settings -----------------------------------------------------------------------------------
def _names(text: str, valid: tuple[str, ...] | list[str], flag: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in valid]
    if not names or unknown or len(set(names)) != len(names):
        raise ValueError(f"{flag}: unknown, repeated or no names in {text!r}; valid: {list(valid)}")
    return names


def _task_paths(items: list[str] | None, flag: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        task, sep, path = item.partition("=")
        if not sep or task not in TASKS or not path:
            raise ValueError(
                f"{flag}: expected TASK=CHECKPOINT with TASK in {list(TASKS)}, got {item!r}"
            )
        out[task] = path
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tasks", default=",".join(TASKS), help=f"comma-separated, of {list(TASKS)}"
    )
    parser.add_argument(
        "--datasets",
        default=",".join(DEFAULT_DATASETS),
        help=f"comma-separated, of {list(DATASETS)} (default {','.join(DEFAULT_DATASETS)})",
    )
    parser.add_argument("--quick", action="store_true", help="a ~2 minute smoke run")
    parser.add_argument("--td3-steps", type=int, default=None, help="TD3 env steps per task")
    parser.add_argument("--episodes", type=int, default=None, help="episodes per collected dataset")
    parser.add_argument(
        "--updates", type=int, default=None, help="offline updates per learner (5000)"
    )
    parser.add_argument(
        "--eval-episodes", type=int, default=None, help="greedy episodes per learner (10)"
    )
    parser.add_argument(
        "--timing-updates", type=int, default=None, help="timed batch-256 updates (10)"
    )
    parser.add_argument(
        "--behaviour-noise", type=float, default=0.1,
        help="TD3 --noise of the medium/expert datasets (0.1)",
    )  # fmt: skip
    parser.add_argument(
        "--medium-fraction", type=float, default=0.5,
        help="medium: the snapshot nearest this fraction from random to expert (0.5)",
    )  # fmt: skip
    parser.add_argument("--medium", action="append", metavar="TASK=CKPT", help="medium checkpoint")
    parser.add_argument("--expert", action="append", metavar="TASK=CKPT", help="expert checkpoint")
    parser.add_argument(
        "--work-dir", default=None, help="datasets and checkpoints (default: beside --out)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1)")


@dataclass(frozen=True)
class OfflineBenchSettings:
    """Validated settings (see ``add_arguments``); ``episodes``/``td3_steps`` None: per task."""

    tasks: list[str]
    datasets: list[str]
    quick: bool
    td3_steps: int | None
    episodes: int | None
    updates: int
    eval_episodes: int
    timing_updates: int
    behaviour_noise: float
    medium_fraction: float
    medium: dict[str, str]
    expert: dict[str, str]
    work_dir: str
    seed: int
    threads: int

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> OfflineBenchSettings:
        quick = bool(args.quick)
        defaults = {"updates": 20, "eval_episodes": 2, "timing_updates": 2} if quick else {
            "updates": 5000, "eval_episodes": 10, "timing_updates": 10,
        }  # fmt: skip
        sizes = {
            k: getattr(args, k) if getattr(args, k) is not None else v for k, v in defaults.items()
        }
        for name in ("td3_steps", "episodes", *sizes):
            value = getattr(args, name) if name not in sizes else sizes[name]
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"--{name.replace('_', '-')} must be an int >= 1, got {value!r}")
        if not (math.isfinite(args.behaviour_noise) and args.behaviour_noise >= 0):
            raise ValueError(f"--behaviour-noise must be >= 0, got {args.behaviour_noise}")
        if not 0.0 < args.medium_fraction < 1.0:
            raise ValueError(f"--medium-fraction must be in (0, 1), got {args.medium_fraction}")
        datasets = _names(args.datasets, DATASETS, "--datasets")
        for mix, parts in MIXES.items():
            if mix in datasets and not set(parts) <= set(datasets):
                raise ValueError(f"--datasets: {mix} needs {list(parts)} as well")
        if "expert" not in datasets or "random" not in datasets:
            raise ValueError("--datasets: random and expert are needed (the normalised scores)")
        work = args.work_dir or str(Path(args.out).with_name(Path(args.out).stem + "_work"))
        return cls(
            tasks=_names(args.tasks, tuple(TASKS), "--tasks"),
            datasets=[d for d in DATASETS if d in datasets],
            quick=quick,
            td3_steps=args.td3_steps,
            episodes=args.episodes,
            behaviour_noise=float(args.behaviour_noise),
            medium_fraction=float(args.medium_fraction),
            medium=_task_paths(args.medium, "--medium"),
            expert=_task_paths(args.expert, "--expert"),
            work_dir=work,
            seed=args.seed,
            threads=args.threads,
            **sizes,
        )

    def td3_steps_of(self, task: OfflineTask) -> int:
        if self.td3_steps is not None:
            return self.td3_steps
        return 1000 if self.quick else task.td3_steps

    def episodes_of(self, task: OfflineTask) -> int:
        if self.episodes is not None:
            return self.episodes
        return task.quick_episodes if self.quick else task.episodes


# --- the run --------------------------------------------------------------------------------------
def qt_config(task: OfflineTask, data: Path, seed: int) -> Any:
    """The task's Q-Transformer config (its learners' network and sizes) on dataset ``data``."""
    from memrl.config import load_config

    return load_config(task.qt_config, [*task.qt_overrides, f"data.path={data}", f"seed={seed}"])


def behaviour_checkpoints(
    task: OfflineTask, settings: OfflineBenchSettings, work: Path, random_return: float
) -> tuple[dict[str, Path], dict[str, Any]]:
    """The medium and expert checkpoints of ``task`` (given or trained) and what was done."""
    given = {
        level: Path(paths[task.name])
        for level, paths in (("medium", settings.medium), ("expert", settings.expert))
        if task.name in paths
    }
    if len(given) == 2:
        return given, {"source": "given", **{k: str(v) for k, v in given.items()}}
    cfg = td3_config(task.td3_overrides, work / "td3", settings.seed, settings.quick)
    steps = settings.td3_steps_of(task)
    log.info("%s: training TD3 (GRU) for %d env steps", task.name, steps)
    tick = time.perf_counter()
    snapshots = train_td3_snapshots(cfg, steps, settings.eval_episodes, settings.seed)
    medium, expert = pick_medium_expert(snapshots, random_return, settings.medium_fraction)
    chosen = {"medium": snapshots[medium], "expert": snapshots[expert]}
    out = dict(given)
    for level, snapshot in chosen.items():
        if level not in out:
            out[level] = save_td3_checkpoint(cfg, snapshot, work / "checkpoints" / level)
    info = {
        "source": "trained" if not given else "trained + given",
        "env_steps": steps,
        "time_s": time.perf_counter() - tick,
        "curve": [[s.env_steps, s.score] for s in snapshots],
        **{f"{level}_env_steps": s.env_steps for level, s in chosen.items()},
        **{f"{level}_eval_return": s.score for level, s in chosen.items()},
        **{level: str(path) for level, path in out.items()},
    }
    if snapshots[expert].score <= random_return:
        log.warning("%s: TD3 did not beat the random policy (%.1f)", task.name, random_return)
    return out, info


def collect_datasets(
    task: OfflineTask, settings: OfflineBenchSettings, work: Path
) -> tuple[dict[str, Path], dict[str, Any]]:
    """Every dataset ``settings.datasets`` needs, under ``work/datasets``; the TD3 details."""
    from memrl.data import merge_datasets
    from memrl.data.collect import collect
    from memrl.rollout import collect_checkpoint

    data = work / "datasets"
    episodes = settings.episodes_of(task)
    paths: dict[str, Path] = {"random": data / "random"}
    log.info("%s: collecting %d random episodes", task.name, episodes)
    collect(task.env_id, str(paths["random"]), episodes, seed=settings.seed)
    random_return = dataset_return(paths["random"])[0]
    ckpts, td3_info = behaviour_checkpoints(task, settings, work, random_return)
    wanted = set(settings.datasets)
    for mix, parts in MIXES.items():
        if mix in wanted:
            wanted |= set(parts)
    for offset, level in enumerate(("medium", "expert"), start=1):
        if level in wanted:
            log.info(
                "%s: collecting %d %s episodes (noise %g)",
                task.name, episodes, level, settings.behaviour_noise,
            )  # fmt: skip
            paths[level] = data / level
            collect_checkpoint(
                ckpts[level], paths[level], episodes, noise=settings.behaviour_noise,
                seed=settings.seed + 1000 * offset,
            )  # fmt: skip
    for mix, parts in MIXES.items():
        if mix in wanted:
            paths[mix] = data / mix
            merge_datasets(
                paths[mix], [paths[p] for p in parts], dataset_id=f"memrl/{task.name}-{mix}-v0"
            )
    return paths, td3_info


def run_task(task: OfflineTask, settings: OfflineBenchSettings, root: Path) -> dict[str, Any]:
    """Datasets, learners and timing of one task; its rows and details."""
    paths, td3_info = collect_datasets(task, settings, root / task.name)
    random_return = dataset_return(paths["random"])[0]
    expert_return = dataset_return(paths["expert"])[0]
    rows = []
    for name in settings.datasets:
        behaviour, n_episodes, steps = dataset_return(paths[name])
        cfg = qt_config(task, paths[name], settings.seed)
        log.info(
            "%s/%s: %d episodes, %d steps, behaviour return %.2f; QT and BC, %d updates each",
            task.name, name, n_episodes, steps, behaviour, settings.updates,
        )  # fmt: skip
        learned = train_and_play(
            cfg, paths[name], settings.updates, settings.eval_episodes, settings.seed
        )
        row = {
            "task": task.name,
            "dataset": name,
            "episodes": n_episodes,
            "steps": steps,
            "behaviour_return": behaviour,
            "bc_return": learned["bc_return"],
            "qtransformer_return": learned["qtransformer_return"],
            "bc_normalized": normalized(learned["bc_return"], random_return, expert_return),
            "qtransformer_normalized": normalized(
                learned["qtransformer_return"], random_return, expert_return
            ),
            "qt_beats_behaviour": learned["qtransformer_return"] > behaviour,
            "updates": settings.updates,
            **{k: v for k, v in learned.items() if k.endswith(("_loss", "_time_s"))},
        }
        log.info("%s/%s: behaviour %.2f, BC %.2f, Q-Transformer %.2f", task.name, name,
                 behaviour, row["bc_return"], row["qtransformer_return"])  # fmt: skip
        rows.append(row)
    timing_data = paths["medium-expert"] if "medium-expert" in paths else paths["expert"]
    cfg = qt_config(task, timing_data, settings.seed)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    timing = []
    for device in devices:
        result = time_learner(cfg, timing_data, settings.timing_updates, device, settings.seed)
        log.info("%s: Q-Transformer learner %.0f timesteps/s at batch %d on %s",
                 task.name, result["timesteps_per_s"], TIMING_BATCH, device)  # fmt: skip
        timing.append({"task": task.name, **result})
    return {
        "rows": rows,
        "td3": td3_info,
        "learner": timing,
        "datasets": {k: str(v) for k, v in paths.items()},
    }


LEARNER_COLUMNS = (
    "task",
    "device",
    "batch_size",
    "sequence_length",
    "timesteps_per_s",
    "updates_per_s",
    "threads",
)
COLUMNS = (
    "task",
    "dataset",
    "episodes",
    "steps",
    "behaviour_return",
    "bc_return",
    "qtransformer_return",
    "bc_normalized",
    "qtransformer_normalized",
    "qt_beats_behaviour",
)


def notes(settings: OfflineBenchSettings, rows: list[dict], learner: list[dict], td3: dict) -> str:
    lines = [
        f"Settings: tasks {settings.tasks}, datasets {settings.datasets}; {settings.updates} "
        f"updates per learner and dataset; greedy evaluation over {settings.eval_episodes} "
        f"episodes (env seeds {EVAL_SEED}+); medium/expert data with TD3 noise "
        f"{settings.behaviour_noise}; torch {torch.__version__}, {settings.threads} thread(s), "
        f"{os.cpu_count()} CPU(s){', quick' if settings.quick else ''}.",
        "Behaviour policies: "
        + "; ".join(
            f"{task}: {info.get('source')}"
            + (
                f", TD3 {info['env_steps']} env steps, medium at {info['medium_env_steps']} "
                f"(eval {info['medium_eval_return']:.1f}), expert at {info['expert_env_steps']} "
                f"(eval {info['expert_eval_return']:.1f})"
                if "env_steps" in info
                else ""
            )
            for task, info in td3.items()
        ),
    ]
    mixed = [r for r in rows if r["dataset"] in MIXES]
    lost = [f"{r['task']}/{r['dataset']}" for r in mixed if not r["qt_beats_behaviour"]]
    if mixed:
        lines.append(
            "Q-Transformer beats the behaviour policy on every mixed dataset."
            if not lost
            else f"Q-Transformer does not beat the behaviour policy on {', '.join(lost)}: "
            f"{settings.updates} updates from scratch per dataset is what this budget allows "
            "(the shipped qtransformer configs train 20,000); rerun with --updates to see where "
            "it gets to."
        )
    lines.append(
        "Learner speed (Q-Transformer, update time only):\n\n"
        + markdown_table(learner, LEARNER_COLUMNS)
    )
    lines.append(PEERS_NOTE)
    return "\n\n".join(lines)


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Run every task and write ``args.out`` (JSON: settings, rows, learner, td3, datasets)
    and its Markdown table."""
    import ray

    settings = OfflineBenchSettings.from_args(args)
    threads = torch.get_num_threads()
    torch.set_num_threads(settings.threads)
    Path(settings.work_dir).mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="run-", dir=settings.work_dir))
    log.info("offline bench: work folder %s", root)
    own_ray = not ray.is_initialized()
    if own_ray:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    began = time.perf_counter()
    results: dict[str, dict[str, Any]] = {}
    try:
        for name in settings.tasks:
            results[name] = run_task(TASKS[name], settings, root)
    finally:
        torch.set_num_threads(threads)
        if own_ray:
            ray.shutdown()
    rows = [row for r in results.values() for row in r["rows"]]
    learner = [t for r in results.values() for t in r["learner"]]
    td3 = {name: r["td3"] for name, r in results.items()}
    payload = {
        "settings": asdict(settings),
        "rows": rows,
        "learner": learner,
        "td3": td3,
        "datasets": {name: r["datasets"] for name, r in results.items()},
        "peers": {"rllib_cql": PEERS_NOTE, "rllib_iql": PEERS_NOTE},
        "work_dir": str(root),
        "time_s": time.perf_counter() - began,
    }
    write_report(args.out, payload, rows, COLUMNS, notes=notes(settings, rows, learner, td3))
    log.info("offline bench: %.0f s; wrote %s", payload["time_s"], args.out)
    print(markdown_table(rows, COLUMNS))
    return rows
