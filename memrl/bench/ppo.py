"""``memrl bench ppo``: PPO env steps/s of RLlib's default LSTM PPO beside memrl's cores.

Every configuration samples the same env with the same runners, envs and batch settings; they
are built together and their iterations interleaved (round ``r`` trains each configuration
once), so that a loaded host slows all of them alike and the per-round ratios stay meaningful.

Configurations: ``rllib-lstm`` is RLlib 2.60's own default PPO RLModule with ``use_lstm=True``
(``lstm_cell_size`` = ``--d-model``, RLlib's default MLP tokenizer in front) on the new API
stack with RLlib's default connectors; any other name is a memrl core (``memrl.models.CORES`` or
``mlp``) through :func:`memrl.rllib.ppo.build_ppo_config`, default encoder and heads.

The time breakdown per iteration comes from RLlib's own timers in the result dict:

* ``sample_s``: ``timers/env_runner_sampling_timer`` (driver wall time of the parallel sampling);
* ``env_step_s``, ``inference_s``, ``env_to_module_s``, ``module_to_env_s``: an env runner's
  per-call means (``env_runners/env_step_timer``, ``rlmodule_inference_timer``, the two
  ``connector_pipeline_timer``) times its vector steps in the iteration (steps sampled over
  runners x envs): one runner's seconds; the runners run in parallel;
* ``runner_state_s``: the state pieces inside those connectors (memrl's
  ``memory_state_to_module`` + ``memory_state_from_module``; RLlib's
  ``add_states_from_episodes_to_batch``);
* ``learner_connector_s``: the learner connector pipeline (GAE, batching, state rebuild);
  ``state_rebuild_s`` its state piece (memrl's ``memory_state_to_train_batch``, RLlib's
  ``add_states_from_episodes_to_batch``);
* ``learner_fwd_bwd_s``: ``timers/learner_update_timer`` minus the learner connector (the
  epochs of minibatch forward + backward + optimizer steps);
* ``weight_sync_s``: ``timers/synch_weights``; ``iteration_s``: ``timers/training_iteration``.

Beside the times, ``train_mflop_per_step`` is the learner module's forward + backward FLOPs per
timestep of a ``max_seq_len`` sequence (:mod:`memrl.bench.flops`: matrix products and attention
only) and ``learner_gflop_per_s`` those FLOPs over every epoch's timesteps divided by
``learner_fwd_bwd_s``: a slow learner doing more arithmetic shows a high first figure, one doing
it inefficiently a low second one.

RLlib smooths these timers with an EMA of coefficient 0.01, which after a slow first iteration
stays wrong for hundreds of iterations; the bench therefore registers, for both RLlib and memrl
alike, a stats class under RLlib's ``"ema"`` name that reports the plain mean of the values
pushed since the previous reduce (see :mod:`memrl.bench.iteration_stats`).

    memrl bench ppo --out results/ppo.json [--cores rllib-lstm,gru,gtrxl,arelit] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch

from memrl.bench.cores import CONTEXT_ARGS, WIDTH_ARGS, scaled_ff
from memrl.bench.report import write_report

log = logging.getLogger(__name__)

RLLIB_LSTM = "rllib-lstm"
DEFAULT_CORES = (RLLIB_LSTM, "gru", "gtrxl", "arelit")
# "<core>+compile": that core acting through torch.compile (model_config compile_acting).
COMPILE_SUFFIX = "+compile"
DEFAULT_ENV = "memrl/popgym-PositionOnlyCartPoleEasy-v0"

# Breakdown fields, seconds per iteration (see the module docstring).
BREAKDOWN = (
    "iteration_s",
    "sample_s",
    "env_step_s",
    "inference_s",
    "env_to_module_s",
    "module_to_env_s",
    "runner_state_s",
    "learner_connector_s",
    "state_rebuild_s",
    "learner_fwd_bwd_s",
    "weight_sync_s",
)
COLUMNS = (
    "config",
    "params",
    "env_steps_per_s",
    "steps_per_s_min",
    "steps_per_s_max",
    "vs_rllib_lstm",
    "vs_gru",
    *BREAKDOWN,
    "train_mflop_per_step",
    "learner_gflop_per_s",
)

# Connector piece timer names (RLlib: the snake-case class name) that handle recurrent state.
_RUNNER_STATE_PIECES = (
    "memory_state_to_module",
    "memory_state_from_module",
    "add_states_from_episodes_to_batch",
)
_LEARNER_STATE_PIECES = ("memory_state_to_train_batch", "add_states_from_episodes_to_batch")
_ENV_TO_MODULE = "env_runners/env_to_module_connector/"
_MODULE_TO_ENV = "env_runners/module_to_env_connector/"
_LEARNER_CONNECTOR = "learners/__all_modules__/learner_connector/"


def core_of(name: str) -> str:
    """The memrl core of a configuration name (``gtrxl+compile`` -> ``gtrxl``)."""
    return name.removesuffix(COMPILE_SUFFIX)


def parse_configs(text: str) -> list[str]:
    """Comma-separated names: ``rllib-lstm``, memrl cores or ``mlp``, a core with
    ``+compile``; ValueError naming ``--cores`` and the valid names otherwise."""
    from memrl.models import CORES

    valid = [RLLIB_LSTM, *dict.fromkeys([*CORES, "mlp"])]
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [
        n
        for n in names
        if n not in valid and not (n.endswith(COMPILE_SUFFIX) and core_of(n) in CORES)
    ]
    if not names or unknown:
        raise ValueError(
            f"--cores: unknown or no names {unknown or text!r}; valid: {valid}, or a core with "
            f"{COMPILE_SUFFIX!r} (acting through torch.compile)"
        )
    if len(set(names)) != len(names):
        raise ValueError(f"--cores names a configuration twice: {names}")
    return names


def _argparse_type(parse):
    def convert(text: str):
        try:
            return parse(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from err

    return convert


def _json_dict(text: str) -> dict:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object, got {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cores",
        type=_argparse_type(parse_configs),
        default=list(DEFAULT_CORES),
        help=f"comma-separated configurations (default {','.join(DEFAULT_CORES)}; "
        f"{RLLIB_LSTM} = RLlib's default LSTM PPO; CORE{COMPILE_SUFFIX} = that core acting "
        "through torch.compile)",
    )
    parser.add_argument("--env", default=DEFAULT_ENV, help=f"gymnasium id ({DEFAULT_ENV})")
    parser.add_argument("--env-config", type=_json_dict, default={}, help="env kwargs (JSON)")
    parser.add_argument("--num-env-runners", type=int, default=2, help="remote env runners (2)")
    parser.add_argument("--num-envs-per-env-runner", type=int, default=4, help="envs each (4)")
    parser.add_argument("--train-batch", type=int, default=2000, help="env steps / iteration")
    parser.add_argument("--minibatch", type=int, default=500, help="minibatch size (500)")
    parser.add_argument("--epochs", type=int, default=4, help="epochs per iteration (4)")
    parser.add_argument("--max-seq-len", type=int, default=20, help="training chunk length (20)")
    parser.add_argument("--d-model", type=int, default=64, help="core width / LSTM cells (64)")
    parser.add_argument(
        "--num-layers", type=int, default=2, help="depth of the d_model cores (2; RNNs keep 1)"
    )
    parser.add_argument("--memory-len", type=int, default=64, help="window cores' M (64)")
    parser.add_argument(
        "--core-kwargs",
        type=_argparse_type(_json_dict),
        default={},
        help='per-core overrides, JSON: {"gtrxl": {"num_heads": 2}}',
    )
    parser.add_argument("--warmup", type=int, default=1, help="untimed iterations each (1)")
    parser.add_argument("--rounds", type=int, default=5, help="timed iterations each (5)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads of the driver's learner (1)"
    )


@dataclass(frozen=True)
class PPOBenchSettings:
    """Validated settings (see ``add_arguments``)."""

    configs: list[str]
    env: str
    env_config: dict
    num_env_runners: int
    num_envs_per_env_runner: int
    train_batch: int
    minibatch: int
    epochs: int
    max_seq_len: int
    d_model: int
    num_layers: int
    memory_len: int
    core_kwargs: dict
    warmup: int
    rounds: int
    seed: int
    threads: int

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> PPOBenchSettings:
        configs = args.cores if isinstance(args.cores, list) else parse_configs(args.cores)
        positive = (
            "num_envs_per_env_runner",
            "train_batch",
            "minibatch",
            "epochs",
            "max_seq_len",
            "d_model",
            "num_layers",
            "memory_len",
            "rounds",
            "threads",
        )
        for name in positive:
            value = getattr(args, name)
            if not isinstance(value, int) or value <= 0:
                flag = "--" + name.replace("_", "-")
                raise ValueError(f"{flag} must be a positive int, got {value!r}")
        for name in ("num_env_runners", "warmup"):
            value = getattr(args, name)
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"--{name.replace('_', '-')} must be an int >= 0, got {value!r}")
        extra = sorted(set(args.core_kwargs) - set(configs))
        if extra:
            raise ValueError(f"--core-kwargs names {extra}, not among --cores {configs}")
        return cls(
            configs=list(configs),
            env=args.env,
            env_config=dict(args.env_config),
            num_env_runners=args.num_env_runners,
            num_envs_per_env_runner=args.num_envs_per_env_runner,
            train_batch=args.train_batch,
            minibatch=args.minibatch,
            epochs=args.epochs,
            max_seq_len=args.max_seq_len,
            d_model=args.d_model,
            num_layers=args.num_layers,
            memory_len=args.memory_len,
            core_kwargs={k: dict(v) for k, v in args.core_kwargs.items()},
            warmup=args.warmup,
            rounds=args.rounds,
            seed=args.seed,
            threads=args.threads,
        )


def memrl_core_kwargs(core: str, settings: PPOBenchSettings) -> dict[str, Any]:
    """Width (all; ``d_ff`` at the core's default ratio to ``d_model``), depth (cores whose width
    is ``d_model``; the RNNs keep one layer) and window of ``core`` under its own names, then
    the ``--core-kwargs`` overrides."""
    from memrl.models import core_class

    params = core_class(core_of(core)).hyperparameters()
    kwargs: dict[str, Any] = scaled_ff(params, settings.d_model)
    kwargs.update({n: settings.d_model for n in WIDTH_ARGS if n in params})
    if "d_model" in params and "num_layers" in params:
        kwargs["num_layers"] = settings.num_layers
    kwargs.update({n: settings.memory_len for n in CONTEXT_ARGS if n in params})
    kwargs.update(settings.core_kwargs.get(core, {}))
    return kwargs


def training_settings(settings: PPOBenchSettings) -> dict[str, Any]:
    return dict(
        train_batch_size_per_learner=settings.train_batch,
        minibatch_size=settings.minibatch,
        num_epochs=settings.epochs,
    )


def build_config(name: str, settings: PPOBenchSettings):
    """The PPOConfig of one configuration (``rllib-lstm`` or a memrl core)."""
    if name == RLLIB_LSTM:
        from ray.rllib.algorithms.ppo import PPOConfig
        from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig

        from memrl.rllib.env import register_rllib_env

        config = (
            PPOConfig()
            .api_stack(enable_rl_module_and_learner=True, enable_env_runner_and_connector_v2=True)
            .framework("torch")
            .environment(env=register_rllib_env(settings.env), env_config=settings.env_config)
            .env_runners(
                num_env_runners=settings.num_env_runners,
                num_envs_per_env_runner=settings.num_envs_per_env_runner,
            )
            .learners(num_learners=0, num_gpus_per_learner=0)
            .rl_module(
                model_config=DefaultModelConfig(
                    use_lstm=True, lstm_cell_size=settings.d_model, max_seq_len=settings.max_seq_len
                )
            )
            .training(**training_settings(settings))
            .debugging(seed=settings.seed)
        )
    else:
        from memrl.rllib.ppo import build_ppo_config

        config = build_ppo_config(
            env=settings.env,
            env_config=settings.env_config,
            core=core_of(name),
            core_kwargs=memrl_core_kwargs(name, settings),
            model={},
            max_seq_len=settings.max_seq_len,
            training=training_settings(settings),
            num_env_runners=settings.num_env_runners,
            num_envs_per_env_runner=settings.num_envs_per_env_runner,
            num_learners=0,
            num_gpus_per_learner=0,
            seed=settings.seed,
            compile_acting=name.endswith(COMPILE_SUFFIX),
        )
    from memrl.bench.iteration_stats import iteration_mean_lookup

    return config.reporting(custom_stats_cls_lookup=iteration_mean_lookup())


def flatten(result: Mapping, prefix: str = "") -> dict[str, float]:
    """``{"a/b/c": number}`` of a nested result dict (non-numbers dropped)."""
    out: dict[str, float] = {}
    for key, value in result.items():
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{prefix}{key}/"))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            out[prefix + str(key)] = float(value)
    return out


def env_steps_lifetime(flat: Mapping[str, float]) -> float:
    for key in ("env_runners/num_env_steps_sampled_lifetime", "num_env_steps_sampled_lifetime"):
        if key in flat:
            return flat[key]
    raise KeyError("the result has no num_env_steps_sampled_lifetime")


def breakdown(flat: Mapping[str, float], vector_steps: float) -> dict[str, float | None]:
    """Seconds per iteration of each ``BREAKDOWN`` field from one iteration's flat result;
    ``vector_steps``: one env runner's env-vector steps in that iteration. A timer RLlib did not
    report is None."""

    def get(key: str) -> float | None:
        return flat.get(key)

    def per_step(key: str) -> float | None:
        value = get(key)
        return None if value is None else value * vector_steps

    def pieces(prefix: str, names: tuple[str, ...], scale: float) -> float:
        return scale * sum(flat.get(f"{prefix}timers/connectors/{n}", 0.0) for n in names)

    update = get("timers/learner_update_timer")
    connector = get(_LEARNER_CONNECTOR + "connector_pipeline_timer")
    return {
        "iteration_s": get("timers/training_iteration"),
        "sample_s": get("timers/env_runner_sampling_timer"),
        "env_step_s": per_step("env_runners/env_step_timer"),
        "inference_s": per_step("env_runners/rlmodule_inference_timer"),
        "env_to_module_s": per_step(_ENV_TO_MODULE + "connector_pipeline_timer"),
        "module_to_env_s": per_step(_MODULE_TO_ENV + "connector_pipeline_timer"),
        "runner_state_s": pieces(_ENV_TO_MODULE, _RUNNER_STATE_PIECES, vector_steps)
        + pieces(_MODULE_TO_ENV, _RUNNER_STATE_PIECES, vector_steps),
        "learner_connector_s": connector,
        "state_rebuild_s": pieces(_LEARNER_CONNECTOR, _LEARNER_STATE_PIECES, 1.0),
        "learner_fwd_bwd_s": None if update is None or connector is None else update - connector,
        "weight_sync_s": get("timers/synch_weights"),
    }


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def summarize(
    iterations: Mapping[str, list[dict[str, Any]]],
    params: Mapping[str, int],
    flops: Mapping[str, float],
    epochs: int,
) -> list[dict[str, Any]]:
    """One row per configuration: median env steps/s over the rounds, its min and max, the
    median of the per-round ratios to ``rllib-lstm`` and ``gru`` (same round), the median
    breakdown, and the learner's FLOPs (``flops``: per timestep of one forward + backward;
    ``epochs`` passes over each iteration's env steps)."""
    rows = []
    for name, records in iterations.items():
        rates = [r["env_steps_per_s"] for r in records]

        def ratio(base: str, records=records) -> float | None:
            if base not in iterations or not records:
                return None
            other = iterations[base]
            return statistics.median(
                r["env_steps_per_s"] / o["env_steps_per_s"]
                for r, o in zip(records, other, strict=True)
            )

        row: dict[str, Any] = {
            "config": name,
            "params": params[name],
            "env_steps_per_s": statistics.median(rates) if rates else None,
            "steps_per_s_min": min(rates) if rates else None,
            "steps_per_s_max": max(rates) if rates else None,
            "vs_rllib_lstm": ratio(RLLIB_LSTM),
            "vs_gru": ratio("gru"),
        }
        for field in BREAKDOWN:
            row[field] = _median([r["breakdown"][field] for r in records])
        row["train_mflop_per_step"] = flops[name] / 1e6
        # Per round: that round's env steps over its own learner time, then the median.
        row["learner_gflop_per_s"] = _median(
            [
                flops[name] * epochs * r["env_steps"] / r["breakdown"]["learner_fwd_bwd_s"] / 1e9
                if r["breakdown"]["learner_fwd_bwd_s"]
                else None
                for r in records
            ]
        )
        rows.append(row)
    return rows


def _ray_cpus(settings: PPOBenchSettings) -> int:
    # Logical CPUs: every configuration keeps its runners alive for the interleaved rounds.
    return max(2, len(settings.configs) * max(1, settings.num_env_runners) + 1)


def measure(
    settings: PPOBenchSettings,
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, int], dict[str, float]]:
    """Build every configuration, warm each up, then ``rounds`` interleaved timed iterations.

    Returns per-configuration iteration records, trainable parameter counts and the learner's
    training FLOPs per timestep."""
    import ray

    from memrl.bench.flops import learner_train_flops_per_timestep

    own_ray = not ray.is_initialized()
    if own_ray:
        ray.init(num_cpus=_ray_cpus(settings), include_dashboard=False, log_to_driver=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(settings.threads)
    algos: dict[str, Any] = {}
    try:
        for name in settings.configs:
            log.info("building %s", name)
            algos[name] = build_config(name, settings).build_algo()
        params = {
            name: sum(p.numel() for p in algo.get_module().parameters() if p.requires_grad)
            for name, algo in algos.items()
        }
        flops = {
            name: learner_train_flops_per_timestep(algo, settings.max_seq_len)
            for name, algo in algos.items()
        }
        last = {}
        for name, algo in algos.items():
            lifetime = 0.0
            for _ in range(settings.warmup):
                lifetime = env_steps_lifetime(flatten(algo.train()))
            last[name] = lifetime
        iterations: dict[str, list[dict[str, Any]]] = {name: [] for name in algos}
        for round_index in range(settings.rounds):
            for name, algo in algos.items():
                start = time.perf_counter()
                result = algo.train()
                wall = time.perf_counter() - start
                flat = flatten(result)
                lifetime = env_steps_lifetime(flat)
                steps = lifetime - last[name]
                last[name] = lifetime
                vector_steps = steps / (
                    max(1, settings.num_env_runners) * settings.num_envs_per_env_runner
                )
                record = {
                    "round": round_index,
                    "wall_s": wall,
                    "env_steps": steps,
                    "env_steps_per_s": steps / wall,
                    "breakdown": breakdown(flat, vector_steps),
                }
                iterations[name].append(record)
                log.info("round %d %s: %.0f env steps/s", round_index, name, steps / wall)
        return iterations, params, flops
    finally:
        for algo in algos.values():
            algo.stop()
        torch.set_num_threads(threads)
        if own_ray:
            ray.shutdown()


def notes(settings: PPOBenchSettings, rows: list[dict[str, Any]]) -> str:
    kwargs = {
        name: memrl_core_kwargs(name, settings) for name in settings.configs if name != RLLIB_LSTM
    }
    lines = [
        f"Settings: env {settings.env}, {settings.num_env_runners} env runners x "
        f"{settings.num_envs_per_env_runner} envs, {settings.train_batch}-step batches, "
        f"{settings.epochs} epochs of minibatch {settings.minibatch}, max_seq_len "
        f"{settings.max_seq_len}, learner in the driver ({settings.threads} torch thread(s)); "
        f"{settings.warmup} warm-up + {settings.rounds} timed iterations each, interleaved; "
        f"torch {torch.__version__}, {os.cpu_count()} CPU(s).",
        f"{RLLIB_LSTM}: RLlib's DefaultModelConfig(use_lstm=True, lstm_cell_size="
        f"{settings.d_model}, max_seq_len={settings.max_seq_len}), its default MLP tokenizer "
        "(fcnet_hiddens [256, 256]) and connectors. memrl cores (default encoder [64]): "
        + "; ".join(f"{k} {v}" for k, v in kwargs.items()),
        "env_steps_per_s: median over the timed rounds (min, max beside it); vs_*: median of "
        "the per-round ratios. Breakdown: seconds per iteration, medians over the rounds; the "
        "env-runner figures are one runner's (runners run in parallel), see memrl/bench/ppo.py. "
        "train_mflop_per_step: the learner module's forward + backward FLOPs per timestep "
        "(torch FlopCounterMode: matrix products and attention, no elementwise work); "
        "learner_gflop_per_s: those FLOPs x epochs x env steps / learner_fwd_bwd_s.",
    ]
    return "\n\n".join(lines)


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Measure and write ``args.out`` (JSON: settings, rows, iterations) and its table."""
    settings = PPOBenchSettings.from_args(args)
    iterations, params, flops = measure(settings)
    rows = summarize(iterations, params, flops, settings.epochs)
    payload = {"settings": asdict(settings), "rows": rows, "iterations": iterations}
    text = notes(settings, rows)
    write_report(args.out, payload, rows, COLUMNS, notes=text)
    from memrl.bench.report import markdown_table

    print(markdown_table(rows, COLUMNS))
    return rows
