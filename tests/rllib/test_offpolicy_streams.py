"""Episode fragments of an RLlib env runner -> replay streams: no gaps, streams start at episode
starts, data (incl. the state before each step) equal to the episodes'; Ape-X epsilons per env."""

from __future__ import annotations

import numpy as np
import pytest
import torch

ray = pytest.importorskip("ray")

from memrl.replay import ChunkConfig, ReplayConfig, ReplayShard  # noqa: E402
from memrl.rllib.offpolicy import EpisodeStreams, OffPolicyEnvRunner  # noqa: E402
from memrl.rllib.r2d2 import ape_x_epsilons, r2d2_config  # noqa: E402


def _config(core: str, core_kwargs: dict, **r2d2):
    return r2d2_config(
        env="memrl/TMaze-v0",
        env_config=dict(corridor_len=3, num_distractors=2, max_steps=9),
        core=core,
        core_kwargs=core_kwargs,
        model={"encoder_hiddens": [8]},
        lr=1e-3,
        r2d2=r2d2,
        replay={},
        batch_size=4,
        learning_starts=0,
        updates_per_iteration=1,
        num_env_runners=0,
        num_envs_per_env_runner=3,
        num_learners=0,
        num_gpus_per_learner=0,
        seed=3,
    )


def _collect(runner, streams, rounds: int, steps: int):
    """Sample ``rounds`` times; returns (chunks, {env: [fragment records...]})."""
    chunks, fragments = [], {i: [] for i in range(runner.num_envs)}
    for _ in range(rounds):
        for episode in runner.sample(num_timesteps=steps):
            env = runner._episode_env[episode.id_]
            before = len(chunks)
            chunks += streams.add(env, episode)
            assert all(c.stream == streams.stream_ids[env] for c in chunks[before:])
            fragments[env].append(
                dict(
                    obs=np.asarray(episode.get_observations(slice(0, len(episode)))),
                    action=np.asarray(episode.get_actions()),
                    t_started=episode.t_started,
                    done=episode.is_done,
                    terminated=episode.is_terminated,
                )
            )
        chunks += streams.flush()
    return chunks, fragments


@pytest.mark.parametrize(
    ("core", "core_kwargs"),
    [
        ("gru", {"hidden_size": 6}),
        ("gtrxl", {"d_model": 8, "num_layers": 1, "num_heads": 2, "memory_len": 4, "d_ff": 8}),
    ],
)
def test_streams_have_no_gaps_start_at_episodes_and_hold_the_episodes(ray_local, core, core_kwargs):
    runner = OffPolicyEnvRunner(config=_config(core, core_kwargs))
    module = runner.module
    spec = module.state_spec()
    streams = EpisodeStreams(3, ChunkConfig(8, 3), spec, module.get_initial_state(), seed=0)
    # 7-step rounds over 3 envs cut episodes (up to 9 steps) mid-way: continued fragments.
    chunks, fragments = _collect(runner, streams, rounds=6, steps=7)
    assert any(f["t_started"] > 0 for frs in fragments.values() for f in frs)
    assert streams.dropped_steps == 0

    # A shard accepts every chunk: it rejects gaps and streams that do not start an episode.
    shard = ReplayShard(
        ReplayConfig(
            capacity=3 * 64, max_streams=3, burn_in=0, seq_len=4, obs_shape=(5,), obs_dtype="int8"
        ),
        spec,
    )
    for chunk in chunks:
        shard.add_chunk(chunk)

    for env, stream in enumerate(streams.stream_ids):
        mine = sorted((c for c in chunks if c.stream == stream), key=lambda c: c.start_step)
        assert mine[0].start_step == 0 and mine[0].data["first"][0]
        n = max(c.start_step + len(c) for c in mine)
        data = {k: [None] * n for k in mine[0].data}
        for c in mine:
            for key, value in c.data.items():
                for i in range(len(c)):
                    data[key][c.start_step + i] = value[i]
        assert all(v is not None for values in data.values() for v in values)  # no gap
        # The stream is the env's fragments, in order.
        expected_obs = np.concatenate([f["obs"] for f in fragments[env]])
        np.testing.assert_array_equal(np.stack(data["obs"]), expected_obs)
        np.testing.assert_array_equal(
            np.stack(data["action"]), np.concatenate([f["action"] for f in fragments[env]])
        )
        first = np.stack(data["first"])
        starts = np.concatenate(
            [[f["t_started"] == 0] + [False] * (len(f["obs"]) - 1) for f in fragments[env]]
        )
        np.testing.assert_array_equal(first, starts)
        # Replaying the stream through the core from a zero state reproduces the stored state
        # before every step (carry) / the slice of every step (window): same params, same data.
        obs = torch.as_tensor(np.stack(data["obs"]))[None]
        first_t = torch.as_tensor(first)[None]
        branch = module.q.branch
        x = branch.encoder(obs)
        with torch.no_grad():
            if core == "gru":
                state = branch.core.initial_state(1)
                for t in range(n):
                    # The carry before an episode's first step is the initial (zero) state.
                    before = np.zeros_like(state["h"][0]) if first[t] else state["h"][0]
                    np.testing.assert_allclose(np.stack(data["h"])[t], before, atol=1e-5)
                    _, state = branch.core(x[:, t : t + 1], state, first_t[:, t : t + 1])
            else:
                slices = branch.core.step_slices(x, branch.core.initial_state(1), first_t)
                key = next(iter(spec))
                np.testing.assert_allclose(np.stack(data[key]), slices[key][0].numpy(), atol=1e-5)
    runner.stop()


def test_fragment_whose_start_was_not_seen_is_dropped(ray_local):
    runner = OffPolicyEnvRunner(config=_config("gru", {"hidden_size": 4}))
    module = runner.module
    runner.sample(num_timesteps=4)  # the streams never see these fragments
    streams = EpisodeStreams(
        3, ChunkConfig(8, 3), module.state_spec(), module.get_initial_state(), seed=0
    )
    chunks = []
    for episode in runner.sample(num_timesteps=30):
        chunks += streams.add(runner._episode_env[episode.id_], episode)
    chunks += streams.flush()
    assert streams.dropped_steps > 0
    for stream in streams.stream_ids:
        mine = [c for c in chunks if c.stream == stream]
        if mine:
            first_chunk = min(mine, key=lambda c: c.start_step)
            assert first_chunk.start_step == 0 and first_chunk.data["first"][0]
    runner.stop()


def test_each_env_explores_with_its_ape_x_epsilon(ray_local):
    runner = OffPolicyEnvRunner(
        config=_config("gru", {"hidden_size": 4}, epsilon=0.5, epsilon_alpha=3.0)
    )
    np.testing.assert_allclose(
        runner.module.epsilons.numpy(), ape_x_epsilons(3, 0.5, 3.0), rtol=1e-6
    )
    module = runner.module
    # Per-row epsilons: row 0 explores often, row 2 rarely; actions keep the batch's shape.
    module.epsilons = torch.tensor([1.0, 0.0, 0.0])
    batch = {
        "obs": torch.zeros(3, 1, 5, dtype=torch.int8),
        "first": torch.ones(3, 1, dtype=torch.bool),
        "state_in": {
            k: torch.as_tensor(v)[None].repeat(3, *[1] * v.ndim)
            for k, v in module.get_initial_state().items()
        },
    }
    greedy = module.forward_inference(batch)["actions"]
    seen = []
    for _ in range(200):
        actions = module.forward_exploration(batch)["actions"]
        assert actions.shape == greedy.shape == (3, 1)
        seen.append(actions[:, 0])
    seen = torch.stack(seen)
    assert (seen[:, 1:] == greedy[1:, 0]).all()  # epsilon 0: greedy
    assert len(set(seen[:, 0].tolist())) == 4  # epsilon 1: uniform over the 4 actions
    runner.stop()
