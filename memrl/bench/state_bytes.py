"""Bytes of recurrent state an episode stores per timestep: memrl's records vs RLlib's default.

For each core, two env runners sample the same environment with the same module config:

* memrl's pipeline (``build_ppo_config``'s connectors): the episode holds one record per step
  (the carry, or the window's per-layer slice);
* RLlib's default connectors: the episode holds the module's whole ``STATE_OUT`` per step.

The bytes are measured from the numpy'd episodes the env runners return (the state arrays under
``STATE_OUT``, lookback rows excluded), divided by the steps in those episodes.

    memrl bench state-bytes --out results/state_bytes.json [--steps 64] [--cores gtrxl,arelit,gru]
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

import numpy as np
import torch

from memrl.bench.report import write_report

log = logging.getLogger(__name__)

# The configurations the benchmark reports: GTrXL as in the design note (4 x M=256 x d=128).
CONFIGS: dict[str, dict[str, Any]] = {
    "gtrxl": dict(d_model=128, num_layers=4, num_heads=4, memory_len=256, d_ff=512),
    "arelit": dict(d_model=128, num_layers=4, num_heads=4),
    "gru": dict(hidden_size=256),
    "trxl": dict(d_model=128, num_layers=4, num_heads=4, memory_len=256, d_ff=512),
    # window 64 x dilations (1, 1, 2, 4): 256 steps of memory, as gtrxl's.
    "local_xl": dict(d_model=128, num_layers=4, num_heads=4, window=64, d_ff=512),
    "relit": dict(d_model=128, num_layers=4, num_heads=4),
    "brt": dict(d_model=128, num_layers=4, num_heads=4),
    "lstm": dict(hidden_size=256),
}
DEFAULT_CORES = ("gtrxl", "arelit", "gru")
ENV = "memrl/TMaze-v0"
ENV_CONFIG = {"corridor_len": 10, "max_steps": 40}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cores",
        default=",".join(DEFAULT_CORES),
        help=f"comma-separated cores, of: {', '.join(CONFIGS)}",
    )
    parser.add_argument("--steps", type=int, default=64, help="env steps sampled per pipeline")
    parser.add_argument("--seed", type=int, default=0)


def _stored_state_bytes(episodes: list) -> tuple[int, int]:
    """(bytes under STATE_OUT without lookback rows, steps) over numpy'd episodes."""
    from ray.rllib.core.columns import Columns

    total = steps = 0
    for episode in episodes:
        buffer = episode.extra_model_outputs[Columns.STATE_OUT]
        if not buffer.finalized:
            raise RuntimeError("expected numpy'd episodes (config.episodes_to_numpy)")
        for array in _leaves(buffer.data):
            total += array[buffer.lookback :].nbytes
        steps += len(episode)
    return total, steps


def _leaves(tree: Any) -> list[np.ndarray]:
    if isinstance(tree, dict):
        return [leaf for value in tree.values() for leaf in _leaves(value)]
    return [np.asarray(tree)]


def measure(core: str, core_kwargs: dict[str, Any], steps: int, seed: int) -> dict[str, Any]:
    """One row: sample ``steps`` steps through each pipeline and compare stored bytes/step."""
    from ray.rllib.env.single_agent_env_runner import SingleAgentEnvRunner

    from memrl.rllib import build_ppo_config

    config = build_ppo_config(
        env=ENV,
        env_config=ENV_CONFIG,
        core=core,
        core_kwargs=core_kwargs,
        model={},
        max_seq_len=32,
        training={"train_batch_size_per_learner": steps},
        num_env_runners=0,
        num_envs_per_env_runner=1,
        num_learners=0,
        num_gpus_per_learner=0,
        seed=seed,
    )
    # RLlib's default storage: the same module, RLlib's own connectors (which keep the whole
    # STATE_OUT per step and feed it back as STATE_IN).
    default = config.copy(copy_frozen=False).env_runners(
        env_to_module_connector=None,
        add_default_connectors_to_env_to_module_pipeline=True,
        module_to_env_connector=None,
    )
    row: dict[str, Any] = {"core": core}
    for name, cfg in (("memrl", config), ("rllib_default", default)):
        runner = SingleAgentEnvRunner(config=cfg)
        try:
            with torch.no_grad():
                episodes = runner.sample(num_timesteps=steps, random_actions=False)
            nbytes, n = _stored_state_bytes(episodes)
        finally:
            runner.stop()
        row[f"{name}_bytes_per_step"] = nbytes / n
    row["ratio"] = row["rllib_default_bytes_per_step"] / row["memrl_bytes_per_step"]
    row["state_fields"] = ", ".join(
        f"{k}{tuple(s.shape)}:{s.kind}" for k, s in _spec(core, core_kwargs).items()
    )
    log.info("%s: %s", core, row)
    return row


def _spec(core: str, core_kwargs: dict[str, Any]) -> dict:
    from memrl.models import make_core

    return make_core(core, 1, **core_kwargs).state_spec()


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Measure every requested core and write the JSON rows and the Markdown table."""
    cores = [c.strip() for c in args.cores.split(",") if c.strip()]
    unknown = sorted(set(cores) - set(CONFIGS))
    if unknown:
        raise ValueError(f"unknown core(s) {unknown} for --cores; valid: {', '.join(CONFIGS)}")
    if args.steps < 1:
        raise ValueError(f"--steps must be >= 1, got {args.steps}")
    rows = [measure(core, CONFIGS[core], args.steps, args.seed) for core in cores]
    columns = ["core", "memrl_bytes_per_step", "rllib_default_bytes_per_step", "ratio"]
    payload = [{c: row[c] for c in columns} for row in rows]
    notes = (
        f"Measured from episodes of {ENV} {ENV_CONFIG} sampled by one env runner per pipeline "
        f"({args.steps} steps each). Core configs: "
        + "; ".join(f"{c} {CONFIGS[c]}" for c in cores)
        + ". Carry cores store their full state either way (ratio 1)."
    )
    write_report(args.out, payload, rows, [*columns, "state_fields"], notes=notes)
    return payload
