"""What a training run reports per iteration: a progress line, TensorBoard scalars, a JSONL log.

RLlib's result dict is nested (``result["env_runners"]["episode_return_mean"]``); this module
flattens it to ``"env_runners/episode_return_mean"`` keys and picks the handful a person reads.
"""

from __future__ import annotations

import json
import logging
import math
import numbers
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

# (our name, candidate flattened RLlib keys in order of preference)
_PICKS: dict[str, tuple[str, ...]] = {
    "episode_return_mean": ("env_runners/episode_return_mean",),
    "episode_len_mean": ("env_runners/episode_len_mean",),
    "policy_loss": ("learners/default_policy/policy_loss",),
    "vf_loss": ("learners/default_policy/vf_loss",),
    "entropy": ("learners/default_policy/entropy",),
    "q_loss": ("learners/default_policy/q_loss",),
    "critic_loss": ("learners/default_policy/critic_loss",),
    "actor_loss": ("learners/default_policy/actor_loss",),
    # offline (qtransformer): no env is sampled; the steps are the dataset steps trained on
    "env_steps_this_iter": (
        "env_runners/num_env_steps_sampled",
        "learners/__all_modules__/num_env_steps_trained",
    ),
    "time_this_iter_s": ("time_this_iter_s",),
}


def flatten(result: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a nested mapping as ``{"a/b/c": float}`` (bools and NaN-free only)."""
    flat: dict[str, float] = {}
    for key, value in result.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, name + "/"))
        elif isinstance(value, numbers.Real) and not isinstance(value, bool):
            number = float(value)
            if math.isfinite(number):
                flat[name] = number
        elif hasattr(value, "item") and getattr(value, "size", 2) == 1:  # numpy / torch scalar
            try:
                number = float(value.item())
            except (TypeError, ValueError):
                continue
            if math.isfinite(number):
                flat[name] = number
    return flat


@dataclass
class IterationMetrics:
    """One iteration's headline numbers (NaN where RLlib did not report the value)."""

    iteration: int
    env_steps: int
    time_s: float
    steps_per_s: float
    episode_return_mean: float = math.nan
    episode_len_mean: float = math.nan
    policy_loss: float = math.nan
    vf_loss: float = math.nan
    entropy: float = math.nan
    q_loss: float = math.nan
    critic_loss: float = math.nan
    actor_loss: float = math.nan

    @classmethod
    def from_result(
        cls, flat: Mapping[str, float], *, iteration: int, env_steps: int, time_s: float
    ) -> IterationMetrics:
        """The headline numbers of one flattened RLlib result (``env_steps``: the running total)."""
        steps = pick(flat, "env_steps_this_iter")
        iter_time = pick(flat, "time_this_iter_s")
        return cls(
            iteration=iteration,
            env_steps=env_steps,
            time_s=time_s,
            steps_per_s=steps / iter_time if iter_time and iter_time > 0 else math.nan,
            **{name: pick(flat, name) for name in _HEADLINE},
        )

    def to_json(self) -> str:
        """One JSON line; NaN becomes null."""
        data = {
            k: (None if isinstance(v, float) and math.isnan(v) else v)
            for k, v in asdict(self).items()
        }
        return json.dumps(data)


# IterationMetrics fields read straight from the result; losses are shown only when reported.
_HEADLINE = (
    "episode_return_mean",
    "episode_len_mean",
    "policy_loss",
    "vf_loss",
    "entropy",
    "q_loss",
    "critic_loss",
    "actor_loss",
)
_LOSS_LABELS = (
    ("policy_loss", "pi_loss", "8.4f"),
    ("vf_loss", "vf_loss", "8.4f"),
    ("entropy", "entropy", "6.3f"),
    ("q_loss", "q_loss", "8.4f"),
    ("critic_loss", "critic_loss", "8.4f"),
    ("actor_loss", "actor_loss", "8.4f"),
)


def steps_this_iter(flat: Mapping[str, float]) -> int:
    """Env steps sampled in this iteration (0 if RLlib did not say)."""
    steps = pick(flat, "env_steps_this_iter")
    return 0 if math.isnan(steps) else int(steps)


def pick(flat: Mapping[str, float], name: str) -> float:
    """The first of ``name``'s candidate keys present in ``flat`` (NaN if none)."""
    for key in _PICKS[name]:
        if key in flat:
            return flat[key]
    return math.nan


def _fmt(value: float, spec: str) -> str:
    return "-" if math.isnan(value) else format(value, spec)


def progress_line(m: IterationMetrics) -> str:
    """A one-line summary for a terminal (rich markup)."""
    return (
        f"[bold]iter {m.iteration:>5d}[/bold]  steps {m.env_steps:>11,d}  "
        f"{_fmt(m.steps_per_s, ',.0f'):>7} sps  "
        f"return [cyan]{_fmt(m.episode_return_mean, '8.3f')}[/cyan]  "
        f"len {_fmt(m.episode_len_mean, '7.1f')}  " + _losses(m)
    )


def _losses(m: IterationMetrics) -> str:
    shown = [(label, getattr(m, f), spec) for f, label, spec in _LOSS_LABELS]
    reported = [item for item in shown if not math.isnan(item[1])]
    # Before the first update nothing is reported: show PPO's columns as placeholders.
    return "  ".join(f"{label} {_fmt(v, spec)}" for label, v, spec in (reported or shown[:3]))


class RunLog:
    """TensorBoard scalars and ``metrics.jsonl`` under one run folder (appends on resume)."""

    def __init__(self, run_dir: Path, tensorboard: bool = True) -> None:
        self.run_dir = run_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        self.jsonl_path = run_dir / "metrics.jsonl"
        self._jsonl = self.jsonl_path.open("a")
        self._writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(run_dir))

    def write(self, metrics: IterationMetrics, flat: Mapping[str, float]) -> None:
        """Log every numeric RLlib metric (x axis: env steps) and the headline numbers."""
        self._jsonl.write(metrics.to_json() + "\n")
        self._jsonl.flush()
        if self._writer is None:
            return
        step = metrics.env_steps
        for key, value in flat.items():
            self._writer.add_scalar(key, value, global_step=step)
        for key, value in asdict(metrics).items():
            if isinstance(value, (int, float)) and not (
                isinstance(value, float) and math.isnan(value)
            ):
                self._writer.add_scalar(f"memrl/{key}", value, global_step=step)
        self._writer.flush()

    def close(self) -> None:
        self._jsonl.close()
        if self._writer is not None:
            self._writer.close()


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """The JSONL history a run wrote (for plots): one dict per iteration."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def rewind_metrics(run_dir: Path, iteration: int) -> int:
    """Cut ``metrics.jsonl`` back to ``iteration`` for a run resumed from that checkpoint.

    Lines of later iterations (trained after the checkpoint, before the run stopped; the resumed
    run trains them again) move to ``metrics.discarded.jsonl`` rather than being deleted, so the
    log reads as one run. Returns how many lines moved. TensorBoard's event files are left as
    they are (it draws both).
    """
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return 0
    kept: list[str] = []
    dropped: list[str] = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            later = int(json.loads(line)["iteration"]) > iteration
        except (ValueError, KeyError, TypeError):
            later = True  # a line cut short when the run was killed
        (dropped if later else kept).append(line)
    if dropped:
        with (path.parent / "metrics.discarded.jsonl").open("a") as stream:
            stream.write("".join(f"{line}\n" for line in dropped))
        tmp = path.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(f"{line}\n" for line in kept))
        tmp.replace(path)
    return len(dropped)


def setup_logging(level: str = "INFO") -> None:
    """Send memrl's log records to a rich handler of their own.

    Not via the root logger: optional env packages (absl, through dm_control) install a root
    handler that drops INFO records, and basicConfig does nothing once one exists.
    """
    logger = logging.getLogger("memrl")
    logger.setLevel(level)
    if not any(getattr(h, "_memrl", False) for h in logger.handlers):
        from rich.logging import RichHandler

        handler = RichHandler(show_path=False)
        handler._memrl = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.propagate = False
