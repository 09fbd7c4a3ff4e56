"""The compact per-step state round trip, for every core.

An env runner (memrl's connectors) samples episodes in several short batches, so episodes span
batches and training chunks start mid-episode. A test module also writes the ``STATE_IN`` and
``first`` it was given at every step into the episode. The PPO learner's connector pipeline then
builds the train batch from each sample batch; at every chunk start its ``STATE_IN`` must equal
the state the env runner had at that step, and its ``first`` must be True exactly at episode
starts. Observations carry (episode tag, step) so that chunks are matched to steps by content.
"""

from __future__ import annotations

import itertools
import shutil
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from core_kwargs import SMALL_CORE_KWARGS, STATEFUL_CORES
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.rllib.env.single_agent_env_runner import SingleAgentEnvRunner

from memrl.models import MASK_SUFFIX
from memrl.models.kv_cache import CACHE_KEYS
from memrl.rllib import FIRST, MemoryActorCritic, build_ppo_config
from memrl.rllib.state import step_record

ENV_ID = "memrl-test/Counter-v0"
MAX_SEQ_LEN = 4
SAMPLE_STEPS = 9  # per sample() call and env: episodes (5..16 steps) span several calls
WINDOW_CORES = ("trxl", "gtrxl", "local_xl")  # act with a K/V cache by default


class CounterEnv(gym.Env):
    """obs = [episode tag, step, noise]; episodes of 5..16 steps; actions are ignored."""

    _tags = itertools.count(1)

    def __init__(self) -> None:
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
        self.action_space = gym.spaces.Discrete(3)

    def _obs(self) -> np.ndarray:
        return np.array([self._tag, self._t, self.np_random.normal()], np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._tag, self._t = next(self._tags), 0
        self._len = int(self.np_random.integers(5, 17))
        return self._obs(), {}

    def step(self, action):
        self._t += 1
        return self._obs(), 0.1, self._t >= self._len, False, {}


if ENV_ID not in gym.registry:
    gym.register(ENV_ID, entry_point=CounterEnv)


class RecordingActorCritic(MemoryActorCritic):
    """Also emits the STATE_IN and ``first`` it received, so the env runner stores them."""

    def _forward(self, batch, **kwargs):
        out = super()._forward(batch, **kwargs)
        if Columns.STATE_IN in batch:
            # [B, 1, ...]: RLlib strips a single time rank from every column but STATE_OUT.
            out["debug_state_in"] = {k: v.unsqueeze(1) for k, v in batch[Columns.STATE_IN].items()}
            out["debug_first"] = batch[FIRST]
        return out


def _config(core: str, shared_core: bool = True, kv_cache: bool = True, **acting: Any):
    config = build_ppo_config(
        env=ENV_ID,
        env_config={},
        core=core,
        core_kwargs=SMALL_CORE_KWARGS[core],
        model={"encoder_hiddens": [8], "shared_core": shared_core},
        max_seq_len=MAX_SEQ_LEN,
        training={"train_batch_size_per_learner": 64, "minibatch_size": 16, "num_epochs": 1},
        num_env_runners=0,
        num_envs_per_env_runner=2,
        num_learners=0,
        num_gpus_per_learner=0,
        seed=3,
    )
    model_config = {**config.rl_module_spec.model_config, "kv_cache": kv_cache, **acting}
    spec = RLModuleSpec(module_class=RecordingActorCritic, model_config=model_config)
    return config.rl_module(rl_module_spec=spec)


def _runner_states(episodes) -> dict[tuple[int, int], tuple[dict, bool]]:
    """(tag, step) -> (STATE_IN the env runner used there, its first flag)."""
    out = {}
    for ep in episodes:
        obs = ep.get_observations(slice(0, len(ep)))
        states = ep.get_extra_model_outputs("debug_state_in", slice(0, len(ep)))
        firsts = ep.get_extra_model_outputs("debug_first", slice(0, len(ep)))
        for i in range(len(ep)):
            key = (int(obs[i][0]), int(obs[i][1]))
            out[key] = ({k: np.asarray(v[i]) for k, v in states.items()}, bool(firsts[i]))
    return out


def _check_round_trip(core: str, shared_core: bool = True) -> None:
    config = _config(core, shared_core)
    runner = SingleAgentEnvRunner(config=config)
    learner = config.build_learner(
        spaces={
            DEFAULT_MODULE_ID: (runner.env.single_observation_space, runner.env.single_action_space)
        }
    )
    spec = runner.module.state_spec()
    recorded: dict = {}
    checked = mid_episode = continuation = 0
    for _ in range(4):
        episodes = runner.sample(num_timesteps=SAMPLE_STEPS * 2, random_actions=False)
        recorded.update(_runner_states(episodes))
        continuation += sum(ep.t_started > 0 for ep in episodes)
        # The episode stores only the compact record under STATE_OUT.
        for ep in episodes:
            stored = ep.get_extra_model_outputs(Columns.STATE_OUT, -1)
            assert set(stored) == set(spec)
            for key, s in spec.items():
                assert tuple(np.shape(stored[key])) == s.slice_shape

        batch = learner._learner_connector(
            rl_module=learner.module,
            batch={},
            episodes=episodes,
            shared_data={},
            metrics=learner.metrics,
        )[DEFAULT_MODULE_ID]
        obs = batch[Columns.OBS].numpy()
        seq_lens = batch[Columns.SEQ_LENS].numpy()
        first = batch[FIRST].numpy()
        state_in = {k: v.numpy() for k, v in batch[Columns.STATE_IN].items()}
        assert first.shape == obs.shape[:2] == (len(seq_lens), MAX_SEQ_LEN)
        for c in range(len(seq_lens)):
            steps = [(int(obs[c, j, 0]), int(obs[c, j, 1])) for j in range(seq_lens[c])]
            # first is True exactly at episode starts inside the chunk.
            assert first[c, : seq_lens[c]].tolist() == [t == 0 for _, t in steps]
            assert not first[c, seq_lens[c] :].any()
            if steps[0] not in recorded:
                continue  # the bootstrap step after a finished episode: never acted on
            runner_state, runner_first = recorded[steps[0]]
            assert runner_first == (steps[0][1] == 0)
            # The runner's live state may hold a K/V cache beside the window (window cores):
            # never stored, never in a train batch.
            cache = {k for k in runner_state if k.rsplit("/", 1)[-1] in CACHE_KEYS}
            assert bool(cache) == (core in WINDOW_CORES)
            runner_state = {k: v for k, v in runner_state.items() if k not in cache}
            assert set(runner_state) == set(state_in)
            for key, value in runner_state.items():
                if key.endswith(MASK_SUFFIX):
                    np.testing.assert_array_equal(state_in[key][c], value, err_msg=key)
                else:
                    np.testing.assert_allclose(state_in[key][c], value, atol=1e-6, err_msg=key)
            checked += 1
            mid_episode += steps[0][1] > 0
    assert checked > 20 and mid_episode > 10 and continuation > 2


@pytest.mark.parametrize("core", STATEFUL_CORES)
def test_learner_rebuilds_env_runner_state(core: str) -> None:
    torch.manual_seed(0)
    _check_round_trip(core)


@pytest.mark.parametrize("core", ["gru", "gtrxl"])
def test_separate_value_core_state(core: str) -> None:
    torch.manual_seed(0)
    _check_round_trip(core, shared_core=False)


def test_step_record_is_the_step_slice() -> None:
    """The window record (newest slot after a step) equals the core's own step_slices."""
    from memrl.models import make_core

    core = make_core("gtrxl", 5, **SMALL_CORE_KWARGS["gtrxl"])
    x = torch.randn(2, 7, 5)
    first = torch.zeros(2, 7, dtype=torch.bool)
    first[1, 3] = True
    state = core.initial_state(2)
    records = []
    for t in range(7):
        _, state = core(x[:, t : t + 1], state, first[:, t : t + 1])
        records.append(step_record(state, core.state_spec())["memory"])
    slices = core.step_slices(x, core.initial_state(2), first)["memory"]
    torch.testing.assert_close(torch.stack(records, dim=1), slices)


@pytest.mark.parametrize("lookback", [0, 2, 6])
def test_states_before_matches_reference_window_rule(lookback: int) -> None:
    """Windows rebuilt from an episode chunk's records follow ``window_before``, the reference
    rule, also for chunks that start mid-episode with only ``lookback`` earlier records."""
    from memrl.models import StateSpec
    from memrl.models.window import window_before
    from memrl.rllib.state import states_before

    memory_len, layers, dim, steps = 4, 2, 3, 20
    gen = torch.Generator().manual_seed(0)
    slices = torch.randn(1, steps, layers, dim, generator=gen)
    first = torch.zeros(1, steps, dtype=torch.bool)
    first[0, [0, 7, 15]] = True
    spec = {"memory": StateSpec("window", (layers, memory_len, dim))}
    initial = {
        "memory": np.zeros((layers, memory_len, dim), np.float32),
        "memory_mask": np.zeros(memory_len, bool),
    }
    episode_start, episode_end = 7, 15
    for chunk_start in range(episode_start, episode_end):  # chunk = steps chunk_start..end-1
        rows_from = max(episode_start, chunk_start - lookback)
        records = {"memory": slices[0, rows_from:episode_end].numpy()}
        lb = chunk_start - rows_from  # lookback rows actually stored
        local = np.arange(0, episode_end - chunk_start)
        first_row = episode_start - rows_from
        try:
            got = states_before(records, spec, initial, lb + local, first_row=first_row)
        except ValueError:
            # Only when a window reaches before the stored rows and the episode start.
            assert lookback < memory_len and chunk_start - lookback > episode_start
            continue
        for i, p in enumerate(local):
            t = chunk_start + p
            if t == episode_start:
                assert not got["memory_mask"][i].any() and not got["memory"][i].any()
                continue
            memory, mask = window_before(slices, first, t, memory_len)
            np.testing.assert_array_equal(got["memory_mask"][i], mask[0].numpy())
            np.testing.assert_allclose(got["memory"][i], memory[0].numpy())


@pytest.mark.parametrize("core", ["gru", "gtrxl", "arelit"])
def test_env_runner_rebuilds_lost_state_from_records(core: str) -> None:
    """If the env runner lost the kept full state (e.g. restored from a checkpoint), it rebuilds
    it from the running episode's records: the next STATE_IN equals the state it lost."""
    from memrl.rllib.connectors import _STATES

    torch.manual_seed(0)
    runner = SingleAgentEnvRunner(config=_config(core))
    runner.sample(num_timesteps=SAMPLE_STEPS * 2, random_actions=False)
    kept = runner._shared_data[_STATES]
    lost = {eid: {k: np.array(v) for k, v in s.items()} for eid, s in kept.items()}
    assert lost
    kept.clear()
    episodes = runner.sample(num_timesteps=2, random_actions=False)
    checked = 0
    for ep in episodes:
        if ep.id_ in lost and ep.t_started > 0:
            used = ep.get_extra_model_outputs("debug_state_in", 0)
            for key, value in lost[ep.id_].items():
                if key in CACHE_KEYS:  # a live cache, or a stale placeholder where rebuilt
                    continue
                np.testing.assert_allclose(np.asarray(used[key]), value, atol=1e-6, err_msg=key)
            checked += 1
    assert checked > 0


def _acting_steps(core: str, **acting: Any) -> dict:
    """(tag, step) -> (action, logits, record) of 3 sample batches from one env runner, with
    new weights set mid-episode before the third, as the algorithm's weight sync sets them."""
    torch.manual_seed(0)
    CounterEnv._tags = itertools.count(1)  # the tag is observed: same inputs in every run
    runner = SingleAgentEnvRunner(config=_config(core, **acting))
    steps: dict = {}
    for i in range(3):
        if i == 2:
            torch.manual_seed(5)
            state = runner.module.get_state()
            runner.module.set_state(
                {
                    k: v + 0.1 * np.random.default_rng(5).normal(size=np.shape(v))
                    for k, v in state.items()
                }
            )
        for ep in runner.sample(num_timesteps=SAMPLE_STEPS * 2, random_actions=False):
            obs = ep.get_observations(slice(0, len(ep)))
            acts = ep.get_actions(slice(0, len(ep)))
            records = ep.get_extra_model_outputs(Columns.STATE_OUT, slice(0, len(ep)))
            logits = ep.get_extra_model_outputs(Columns.ACTION_DIST_INPUTS, slice(0, len(ep)))
            for j in range(len(ep)):
                steps[(int(obs[j][0]), int(obs[j][1]))] = (
                    int(acts[j]),
                    np.asarray(logits[j]),
                    {k: np.asarray(v[j]) for k, v in records.items()},
                )
    return steps


def _assert_same_acting(got: dict, want: dict) -> None:
    assert set(got) == set(want) and len(want) > 40
    for key, (action, logits, record) in want.items():
        g_action, g_logits, g_record = got[key]
        assert g_action == action
        np.testing.assert_allclose(g_logits, logits, atol=1e-5)
        assert set(g_record) == set(record)
        for field, value in record.items():
            np.testing.assert_allclose(g_record[field], value, atol=1e-5)


@pytest.mark.parametrize("core", WINDOW_CORES)
def test_kv_cache_acting_equals_uncached_acting(core: str) -> None:
    """Same seeds, cache on and off: the same actions, records and STATE_IN at every step,
    across episode starts and sample batches, and after a weight sync mid-episode."""
    _assert_same_acting(_acting_steps(core, kv_cache=True), _acting_steps(core, kv_cache=False))


@pytest.mark.parametrize(
    ("core", "backend"),
    [("gru", "aot_eager"), ("arelit", "aot_eager"), ("gtrxl", "aot_eager"), ("gtrxl", "inductor")],
)
def test_compiled_acting_equals_eager_acting(core: str, backend: str, caplog) -> None:
    """``compile_acting``: the compiled one-step forward acts as the eager one, across episode
    starts and sample batches, and after a weight sync mid-episode (weights are graph inputs,
    not constants baked into the graph)."""
    if backend == "inductor" and not (shutil.which("g++") or shutil.which("clang++")):
        pytest.skip("inductor on the CPU needs a C++ compiler")
    torch._dynamo.reset()
    with caplog.at_level("WARNING", logger="memrl.rllib.module"):
        compiled = _acting_steps(core, compile_acting=True, compile_backend=backend)
    assert "compile_acting" not in caplog.text  # compiled, not the eager fallback
    _assert_same_acting(compiled, _acting_steps(core, kv_cache=False))


def test_compiled_acting_falls_back_to_eager_with_a_warning(caplog) -> None:
    with caplog.at_level("WARNING", logger="memrl.rllib.module"):
        steps = _acting_steps("gru", compile_acting=True, compile_backend="no-such-backend")
    _assert_same_acting(steps, _acting_steps("gru"))
    assert "compile_acting" in caplog.text and "no-such-backend" in caplog.text
