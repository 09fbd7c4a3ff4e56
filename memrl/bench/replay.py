"""Replay benchmark: bytes per stored step, insert/sample rates, learner idle time.

``memrl bench replay --out results/replay.json`` writes::

    {"rows": [{"core", "state_storage", "bytes_per_step", "naive_bytes_per_step", "ratio",
               "limit_bytes_per_step", "insert_steps_per_s", "sample_steps_per_s"}, ...],
     "learner_idle_fraction": float, "learner": {...}, "settings": {...}, "notes": [...]}

* bytes_per_step: every preallocated byte of a shard (data, per-step bookkeeping, sum-tree)
  divided by its capacity, measured on a real ``ReplayShard``.
* naive_bytes_per_step: the same step fields with the *whole* state stored at every step, as
  RLlib's default connectors do (window cores: ``[layers, M, d]`` plus the mask).
* limit_bytes_per_step: 1.25 x (observation + per-step state slice), the design's budget.
* insert / sample rates: timesteps per second for one shard in this process, synthetic data;
  sampling includes window reconstruction and yields ``batch * (burn_in + seq_len)`` steps.
* learner_idle_fraction: share of wall time a simulated learner (a sleep of
  ``--learner-step-ms`` per update) waits in ``PrefetchSampler.next`` with ``--shards`` Ray
  shard actors and ``--prefetch`` rounds in flight.
"""

from __future__ import annotations

import argparse
import logging
import time
from typing import Any

import numpy as np

from memrl.bench.report import write_report
from memrl.models import make_core, stateful_cores
from memrl.models.base import StateSpec
from memrl.replay import Chunk, ChunkConfig, ReplayConfig, ReplayShard
from memrl.replay.codec import STORAGE_NUMPY_DTYPE

log = logging.getLogger(__name__)

# Benchmark sizes: the window cores at the design's example (4 layers, M=256, d=128); the
# others at their defaults.
BENCH_CORE_KWARGS: dict[str, dict[str, Any]] = {
    "trxl": dict(d_model=128, num_layers=4, memory_len=256),
    "gtrxl": dict(d_model=128, num_layers=4, memory_len=256),
    "local_xl": dict(d_model=128, num_layers=4, window=64),  # x max dilation 4: M=256
}
COLUMNS = [
    "core",
    "state_storage",
    "bytes_per_step",
    "naive_bytes_per_step",
    "ratio",
    "limit_bytes_per_step",
    "insert_steps_per_s",
    "sample_steps_per_s",
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``memrl bench replay`` (``--out`` is added by the CLI)."""
    parser.add_argument(
        "--cores", nargs="*", default=list(stateful_cores()), help="cores to measure"
    )
    parser.add_argument("--obs-dim", type=int, default=64, help="float32 observation size")
    parser.add_argument("--capacity", type=int, default=2**15, help="steps per shard (at most)")
    parser.add_argument(
        "--max-shard-mb",
        type=float,
        default=512.0,
        help="shrink the capacity of cores whose steps are large to this",
    )
    parser.add_argument("--streams", type=int, default=8, help="streams (lanes) per shard")
    parser.add_argument("--batch", type=int, default=64, help="sequences per sample")
    parser.add_argument("--burn-in", type=int, default=40)
    parser.add_argument("--seq-len", type=int, default=80)
    parser.add_argument("--seconds", type=float, default=2.0, help="time per rate measurement")
    parser.add_argument(
        "--bf16",
        nargs="*",
        default=["gtrxl"],
        help="cores measured again with bfloat16 state storage",
    )
    parser.add_argument("--idle-core", default="gtrxl", help="core of the learner-idle run")
    parser.add_argument("--shards", type=int, default=2, help="shard actors, learner-idle run")
    parser.add_argument("--prefetch", type=int, default=3, help="sample rounds in flight")
    parser.add_argument(
        "--learner-step-ms", type=float, default=100.0, help="simulated learner update time"
    )
    parser.add_argument("--learner-steps", type=int, default=30)
    parser.add_argument("--skip-idle", action="store_true", help="skip the Ray learner-idle run")


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Measure every core in ``args.cores`` and the learner idle fraction; write the report."""
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    specs: dict[str, dict[str, StateSpec]] = {}
    for name in args.cores:
        try:
            core = make_core(name, input_dim=args.obs_dim, **BENCH_CORE_KWARGS.get(name, {}))
        except ImportError as err:
            notes.append(f"{name}: skipped, core not importable ({err})")
            log.warning("skipping %s: %s", name, err)
            continue
        specs[name] = core.state_spec()
        storages = ["float32"] + (["bfloat16"] if name in args.bf16 else [])
        for storage in storages:
            row = measure_core(name, specs[name], storage, args)
            rows.append(row)
            log.info("%s", row)
    payload: dict[str, Any] = {"rows": rows, "learner_idle_fraction": None}
    if not args.skip_idle and args.idle_core in specs:
        learner = measure_learner_idle(specs[args.idle_core], args)
        payload["learner_idle_fraction"] = learner["idle_fraction"]
        payload["learner"] = learner
        notes.append(
            f"learner idle fraction {learner['idle_fraction']:.3f} with {args.shards} shards, "
            f"prefetch {args.prefetch}, batch {args.batch}x{args.burn_in + args.seq_len} steps "
            f"of {args.idle_core}, simulated learner step {args.learner_step_ms} ms"
        )
    payload["settings"] = {k: v for k, v in vars(args).items() if k != "func"}
    payload["notes"] = notes
    write_report(args.out, payload, rows, COLUMNS, notes="\n".join(f"- {n}" for n in notes))
    return rows


def bench_config(spec: dict[str, StateSpec], storage: str, args: argparse.Namespace):
    """A ReplayConfig whose shard fits ``--max-shard-mb``; returns (config, est. bytes/step)."""
    state_bytes = sum(
        int(np.prod(s.slice_shape)) * STORAGE_NUMPY_DTYPE[storage].itemsize for s in spec.values()
    )
    est = state_bytes + 4 * args.obs_dim + 64
    capacity = min(args.capacity, int(args.max_shard_mb * 2**20 // est))
    history = max((s.memory_len for s in spec.values() if s.kind == "window"), default=0)
    need = history + args.burn_in + args.seq_len + ChunkConfig().length
    streams = max(1, min(args.streams, capacity // (2 * need)))
    capacity -= capacity % streams
    config = ReplayConfig(
        capacity=capacity,
        max_streams=streams,
        burn_in=args.burn_in,
        seq_len=args.seq_len,
        obs_shape=(args.obs_dim,),
        action_shape=(),
        action_dtype="int64",
        state_storage=storage,
        seed=0,
    )
    return config, state_bytes


def synthetic_chunk(spec: dict[str, StateSpec], obs_dim: int, length: int, seed: int) -> dict:
    """Random step data for one chunk; episodes of ~200 steps (one start per chunk at most)."""
    rng = np.random.default_rng(seed)
    first = np.zeros(length, dtype=bool)
    data = {
        "obs": rng.standard_normal((length, obs_dim), dtype=np.float32),
        "action": rng.integers(0, 4, size=length),
        "reward": rng.standard_normal(length, dtype=np.float32),
        "terminated": np.zeros(length, dtype=bool),
        "truncated": np.zeros(length, dtype=bool),
        "first": first,
    }
    for key, s in spec.items():
        data[key] = rng.standard_normal((length, *s.slice_shape), dtype=np.float32)
    return data


def _chunks(spec, args, streams: int):
    """Endless R2D2-style chunks (80 steps, overlap 40) round-robin over ``streams``."""
    chunk = ChunkConfig()
    base = synthetic_chunk(spec, args.obs_dim, chunk.length, seed=1)
    episode_len = 200
    next_start = [0] * streams
    while True:
        for stream in range(streams):
            start = next_start[stream]
            data = dict(base)
            steps = start + np.arange(chunk.length)
            data["first"] = steps % episode_len == 0
            data["terminated"] = steps % episode_len == episode_len - 1
            yield Chunk(stream=stream, start_step=start, data=data)
            next_start[stream] = start + chunk.stride  # the next chunk overlaps this one


def measure_core(
    name: str, spec: dict[str, StateSpec], storage: str, args: argparse.Namespace
) -> dict[str, Any]:
    config, state_bytes = bench_config(spec, storage, args)
    shard = ReplayShard(config, spec)
    obs_bytes = 4 * args.obs_dim
    # Insert: fill the shard twice over (so the ring overwrites) or until time runs out.
    chunks = _chunks(spec, args, config.max_streams)
    stored, began = 0, time.perf_counter()
    while stored < 2 * config.capacity or time.perf_counter() - began < args.seconds / 4:
        stored += shard.add_chunk(next(chunks))
        if time.perf_counter() - began > args.seconds and stored >= config.capacity:
            break
    insert_rate = stored / (time.perf_counter() - began)
    # Sample with window reconstruction.
    sampled, began, calls = 0, time.perf_counter(), 0
    while calls < 3 or time.perf_counter() - began < args.seconds:
        batch = shard.sample(args.batch)
        sampled += batch.mask.size
        calls += 1
    sample_rate = sampled / (time.perf_counter() - began)
    bytes_per_step = shard.nbytes / config.capacity
    step_bytes = obs_bytes + 8 + 4 + 3  # obs, int64 action, float32 reward, three flags
    naive = step_bytes
    for s in spec.values():
        naive += int(np.prod(s.shape)) * 4
        if s.kind == "window":
            naive += s.memory_len  # the bool mask
    per_step_state = sum(int(np.prod(s.slice_shape)) * 4 for s in spec.values())
    return {
        "core": name,
        "state_storage": storage,
        "bytes_per_step": round(bytes_per_step, 1),
        "naive_bytes_per_step": naive,
        "ratio": round(naive / bytes_per_step, 2),
        "limit_bytes_per_step": 1.25 * (obs_bytes + per_step_state),
        "state_bytes_per_step": state_bytes,
        "capacity": config.capacity,
        "insert_steps_per_s": round(insert_rate),
        "sample_steps_per_s": round(sample_rate),
    }


def measure_learner_idle(spec: dict[str, StateSpec], args: argparse.Namespace) -> dict[str, Any]:
    """Fill ``--shards`` Ray shard actors, then time a simulated learner pulling batches."""
    import ray

    from memrl.replay.distributed import PrefetchSampler, create_shards, replay_writer

    started_ray = not ray.is_initialized()
    if started_ray:
        ray.init(include_dashboard=False, log_to_driver=False)
    try:
        config, _ = bench_config(spec, "float32", args)
        config = ReplayConfig.from_dict(
            {
                **config.to_dict(),
                "capacity": min(config.capacity, 2**14 - 2**14 % config.max_streams),
            }
        )
        shards = create_shards(args.shards, config, spec, num_cpus=0)
        chunks = _chunks(spec, args, config.max_streams * args.shards)
        writers = [replay_writer(shards, w, max_in_flight=8) for w in range(args.shards)]
        for _ in range(config.capacity // ChunkConfig().stride):
            chunk = next(chunks)
            writers[chunk.stream % args.shards].add([chunk])
        for w in writers:
            w.flush()
        sampler = PrefetchSampler(shards, args.batch, prefetch=args.prefetch, seed=0)
        step_s = args.learner_step_ms / 1000.0
        for _ in range(3):  # warm-up: fill the pipe
            sampler.next()
        sampler.wait_s = 0.0
        began = time.perf_counter()
        for _ in range(args.learner_steps):
            batch = sampler.next()
            time.sleep(step_s)  # the learner's update, overlapped with the prefetched rounds
            sampler.update_priorities(batch, priority=np.ones(len(batch)))
        wall = time.perf_counter() - began
        sampler.close()
        for shard in shards:
            ray.kill(shard)
        return {
            "idle_fraction": round(sampler.wait_s / wall, 4),
            "wait_s": round(sampler.wait_s, 3),
            "wall_s": round(wall, 3),
            "learner_step_ms": args.learner_step_ms,
            "batch_steps": args.batch * config.sample_len,
            "shards": args.shards,
            "prefetch": args.prefetch,
        }
    finally:
        if started_ray:
            ray.shutdown()
