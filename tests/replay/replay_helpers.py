"""Recording real core rollouts (with episode resets) and an independent validity oracle."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from memrl.models import make_core
from memrl.replay import ChunkConfig, ChunkWriter, ReplayConfig, ReplayShard

OBS_DIM = 5


@dataclass
class Rollout:
    """What ``num_envs`` actors did over ``steps`` steps; arrays are [E, S, ...]."""

    obs: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    first: np.ndarray
    state_in: dict[str, np.ndarray]  # the state before each step, incl. window masks
    record: dict[str, np.ndarray]  # what the replay stores per state field (carry / slice)

    def step_record(self, t: int) -> dict[str, np.ndarray]:
        out = {
            "obs": self.obs[:, t],
            "action": self.action[:, t],
            "reward": self.reward[:, t],
            "terminated": self.terminated[:, t],
            "truncated": self.truncated[:, t],
            "first": self.first[:, t],
        }
        out.update({k: v[:, t] for k, v in self.record.items()})
        return out


def episode_flags(num_envs: int, steps: int, rng: np.random.Generator, max_len: int = 30):
    """first / terminated / truncated with random episode lengths (some of 1 or 2 steps)."""
    first = np.zeros((num_envs, steps), dtype=bool)
    terminated = np.zeros((num_envs, steps), dtype=bool)
    truncated = np.zeros((num_envs, steps), dtype=bool)
    for env in range(num_envs):
        t = 0
        while t < steps:
            first[env, t] = True
            length = int(rng.choice([1, 2, int(rng.integers(3, max_len))], p=[0.1, 0.1, 0.8]))
            end = t + length - 1
            if end < steps:
                (terminated if rng.random() < 0.7 else truncated)[env, end] = True
            t = end + 1
    return first, terminated, truncated


def record_rollout(core, num_envs: int, steps: int, seed: int) -> Rollout:
    """Run ``core`` one step at a time like an actor, recording its state before every step."""
    rng = np.random.default_rng(seed)
    first, terminated, truncated = episode_flags(num_envs, steps, rng)
    obs = rng.standard_normal((num_envs, steps, OBS_DIM)).astype(np.float32)
    spec = core.state_spec()
    state_in = {k: [] for k in core.initial_state(1)}
    record = {k: [] for k in spec}
    core.eval()
    with torch.no_grad():
        state = core.initial_state(num_envs)
        for t in range(steps):
            x = torch.from_numpy(obs[:, t : t + 1])
            f = torch.from_numpy(first[:, t : t + 1])
            for key, value in state.items():
                state_in[key].append(value.numpy().copy())
            slices = core.step_slices(x, state, f)
            for key, s in spec.items():
                if s.kind == "carry":
                    record[key].append(state[key].numpy().copy())
                else:
                    record[key].append(slices[key][:, 0].numpy().copy())
            _, state = core(x, state, f)
    return Rollout(
        obs=obs,
        action=rng.integers(0, 4, size=(num_envs, steps)),
        reward=rng.standard_normal((num_envs, steps)).astype(np.float32),
        terminated=terminated,
        truncated=truncated,
        first=first,
        state_in={k: np.stack(v, axis=1) for k, v in state_in.items()},
        record={k: np.stack(v, axis=1) for k, v in record.items()},
    )


def build_core(name: str, kwargs: dict, seed: int = 0):
    torch.manual_seed(seed)
    return make_core(name, input_dim=OBS_DIM, **kwargs)


def replay_config(**overrides) -> ReplayConfig:
    base = dict(
        capacity=4 * 64,
        max_streams=4,
        burn_in=4,
        seq_len=8,
        obs_shape=(OBS_DIM,),
        obs_dtype="float32",
        action_shape=(),
        action_dtype="int64",
        seed=0,
    )
    base.update(overrides)
    return ReplayConfig(**base)


def expected_valid(rollout: Rollout, env: int, lo: int, hi: int, length: int, history: int):
    """Oracle, step by step: which stream steps in [lo, hi] may start a sequence."""
    first = rollout.first[env]
    done = rollout.terminated[env] | rollout.truncated[env]
    valid = {}
    for s in range(lo, hi + 1):
        complete = s + length - 1 <= hi or any(
            done[k] or (k + 1 <= hi and first[k + 1]) for k in range(s, hi + 1)
        )
        history_ok = True
        if history and s > 0:
            start = s - 1
            while not first[start]:
                start -= 1
            history_ok = max(s - history, start) >= lo
        valid[s] = complete and history_ok
    return valid


def assert_batch_matches(batch, rollout: Rollout, env_of_stream: dict[int, int], length: int):
    """Every sampled sequence and start state equals what the actor saw and had."""
    for b in range(len(batch)):
        env = env_of_stream[int(batch.stream[b])]
        s = int(batch.stream_step[b])
        for key, value in rollout.state_in.items():
            np.testing.assert_array_equal(batch.state[key][b], value[env, s], err_msg=f"{key} @{s}")
        # The sequence: steps s.. of the same episode, padding after its end.
        steps = s + np.arange(length)
        same = np.zeros(length, dtype=bool)
        for i, t in enumerate(steps):
            if t >= rollout.first.shape[1] or (i > 0 and rollout.first[env, t]):
                break
            same[i] = True
        np.testing.assert_array_equal(batch.mask[b] & ~same, False)
        valid = batch.mask[b]
        np.testing.assert_array_equal(batch.obs[b][valid], rollout.obs[env, steps[valid]])
        np.testing.assert_array_equal(batch.action[b][valid], rollout.action[env, steps[valid]])
        np.testing.assert_array_equal(batch.first[b][valid], rollout.first[env, steps[valid]])
        assert not batch.obs[b][~valid].any()


def fill(shard: ReplayShard, rollout: Rollout, chunk: ChunkConfig, upto: int, writer=None):
    """Feed steps [writer.steps, upto) of ``rollout`` through a ChunkWriter into ``shard``."""
    if writer is None:
        writer = ChunkWriter(
            rollout.obs.shape[0], chunk, streams=[101 + e for e in range(rollout.obs.shape[0])]
        )
    while writer.steps < upto:
        for c in writer.add(rollout.step_record(writer.steps)):
            shard.add_chunk(c)
    return writer


# A small window core: its rollouts exercise window slices and masks (and gaps in them).
WINDOW_CORE = ("gtrxl", dict(d_model=8, num_layers=2, num_heads=2, memory_len=6, d_ff=16))


def window_rollout(envs: int, steps: int, seed: int):
    """``(state_spec, rollout)`` of :data:`WINDOW_CORE` over ``envs`` envs and ``steps`` steps."""
    core = build_core(*WINDOW_CORE)
    return core.state_spec(), record_rollout(core, envs, steps, seed=seed)
