"""One Tune trial: a memrl config trained by memrl's own loop, reporting to Tune each iteration."""

from __future__ import annotations

import logging
import math
import tempfile
from dataclasses import fields
from pathlib import Path
from typing import Any

from memrl import checkpoints
from memrl.progress import IterationMetrics
from memrl.tune.variants import Variant, trial_config

# Not __name__-based on purpose: every memrl.tune logger sits under memrl's log handler.
log = logging.getLogger("memrl.tune")

# What a trial reports to Tune each iteration: every headline number of the progress line.
REPORTED: tuple[str, ...] = tuple(f.name for f in fields(IterationMetrics))


def trial_dirname(index: int) -> str:
    """The folder of trial ``index`` inside the experiment folder."""
    return f"trial_{index:03d}"


def _report_value(value: float) -> float | None:
    return None if isinstance(value, float) and math.isnan(value) else value


def train_trial(config: dict[str, Any], base: dict[str, Any], experiment: str) -> None:
    """Tune function trainable: train one memrl config, report every iteration.

    ``base`` is the plain base config data and ``experiment`` the experiment folder (both
    shared by all trials, passed through ``tune.with_parameters``); ``config["variant"]`` is
    this trial's :class:`Variant` dict. memrl's output (TensorBoard, metrics.jsonl) goes straight
    to the trial's folder under ``experiment`` (not Tune's per-session working dir, which is
    only copied to storage at checkpoints and starts empty on resume); checkpoints go to Tune,
    which restores the newest on resume or retry.
    """
    from ray import tune

    from memrl.loop import run_loop
    from memrl.progress import setup_logging
    from memrl.session import build_algorithm

    variant = Variant(**config["variant"])
    trial_dir = Path(experiment) / trial_dirname(variant.index)
    cfg = trial_config(base, variant, output_dir=str(trial_dir))
    setup_logging(cfg.logging.level)
    start = None
    resume = tune.get_checkpoint()
    if resume is not None:
        with resume.as_directory() as folder:
            path = checkpoints.find_verified(folder)  # verified before anything is unpickled
            start = checkpoints.load_state(path)
            algo = build_algorithm(cfg, resume=path)
        log.info("trial %d resumed at iteration %d", variant.index, start.iteration)
    else:
        algo = build_algorithm(cfg)
    config_data = cfg.to_yaml_dict()
    extra_keys = config.get("extra_keys", ())

    def report(metrics: IterationMetrics, flat: dict[str, float], due: Any) -> None:
        values = {k: _report_value(getattr(metrics, k)) for k in REPORTED}
        # Any flattened RLlib key can be the metric too ("env_runners/episode_return_mean").
        values.update({k: v for k, v in flat.items() if k in extra_keys})
        if due is None:
            tune.report(values)
            return
        # Tune copies the folder into the trial's storage at report time.
        with tempfile.TemporaryDirectory(prefix="memrl-ckpt-") as folder:
            checkpoints.save(algo, Path(folder), config_data, due, keep=1)
            tune.report(values, checkpoint=tune.Checkpoint.from_directory(folder))

    try:
        run_loop(cfg, algo, report, start)
    finally:
        algo.stop()
