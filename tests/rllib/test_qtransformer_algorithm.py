"""Q-Transformer as memrl train drives it: results the loop reads, exact save/restore, errors."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from memrl.config import ConfigError, TrainConfig, config_from_dict
from memrl.data.collect import collect
from memrl.progress import IterationMetrics, flatten, steps_this_iter
from memrl.rllib.qtransformer import QTransformerAlgorithm, load_policy, play_greedy

ENV = "memrl/PointGoalMemory-v0"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("qt") / "ds"
    collect(ENV, str(out), 4, seed=0, env_kwargs={"max_episode_steps": 12})
    return out


def _cfg(dataset: Path, tmp: Path, **over) -> TrainConfig:
    data = {
        "name": "qt-unit",
        "algo": "qtransformer",
        "output_dir": str(tmp),
        "task": {"env_name": ENV, "max_episode_steps": 12},
        "data": {"path": str(dataset)},
        "model": {"core": "gru", "core_kwargs": {"hidden_size": 8, "num_layers": 1},
                  "network": {"encoder_hiddens": [8]}},
        "qtransformer": {"bins": 5, "batch_size": 3, "seq_len": 4, "burn_in": 2, "n_step": 2,
                         "head_hiddens": [8], "bin_embedding_dim": 4,
                         "updates_per_iteration": 2, "eval_every": 2, "eval_episodes": 2},
        "stop": {"iterations": 3},
    }  # fmt: skip
    for key, value in over.items():
        data[key] = {**data[key], **value} if isinstance(value, dict) else value
    return config_from_dict(data)


def _state(algo: QTransformerAlgorithm) -> list[torch.Tensor]:
    u = algo.update
    tensors = [*u.online.state_dict().values(), *u.target.state_dict().values()]
    for per_param in u.optimizer.state_dict()["state"].values():
        tensors += [v for v in per_param.values() if isinstance(v, torch.Tensor)]
    return tensors


def test_results_carry_what_the_loop_reads(dataset: Path, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    algo = QTransformerAlgorithm(_cfg(dataset, tmp_path))
    first, second = algo.train(), algo.train()
    flat = flatten(second)
    # 2 updates x 3 sequences x (2 burn-in + 4 + 2 n-step) steps
    assert steps_this_iter(flatten(first)) == steps_this_iter(flat) == 2 * 3 * 8
    m = IterationMetrics.from_result(flat, iteration=2, env_steps=96, time_s=1.0)
    assert math.isfinite(m.q_loss) and math.isnan(m.policy_loss)
    assert "env_runners" not in first  # evaluations every 2nd iteration only
    assert 0.0 <= m.episode_return_mean <= 12.0 and m.episode_len_mean == 12.0
    assert second["training_iteration"] == 2


def test_save_restore_continues_bit_identically(dataset: Path, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    cfg = _cfg(dataset, tmp_path)
    algo = QTransformerAlgorithm(cfg)
    algo.train()
    algo.train()
    algo.save_to_path(tmp_path / "saved")
    after = [algo.train(), algo.train()]
    # Another seed: everything that matters must come from the checkpoint.
    again = QTransformerAlgorithm(cfg.model_copy(update={"seed": 7}))
    again.restore_from_path(tmp_path / "saved")
    assert again.iteration == 2 and again.trained_steps == algo.trained_steps - 96
    resumed = [again.train(), again.train()]
    for a, b in zip(after, resumed, strict=True):
        a, b = flatten(a), flatten(b)
        keep = [k for k in a if "per_s" not in k and "time" not in k]
        assert {k: a[k] for k in keep} == {k: b[k] for k in keep}
    for x, y in zip(_state(algo), _state(again), strict=True):
        assert torch.equal(x, y)
    assert algo.sampler.state() == again.sampler.state()


def test_load_policy_plays_without_the_dataset(dataset: Path, tmp_path: Path) -> None:
    cfg = _cfg(dataset, tmp_path)
    algo = QTransformerAlgorithm(cfg)
    algo.train()
    algo.save_to_path(tmp_path / "saved")
    network, bins = load_policy(cfg, tmp_path / "saved")
    for x, y in zip(network.state_dict().values(), algo.network.state_dict().values(), strict=True):
        assert torch.equal(x, y)
    from memrl.envs import make_env

    def env_fn():
        return make_env(ENV, max_episode_steps=12)

    a = play_greedy(network, bins, env_fn, 2, seed=3)
    b = play_greedy(algo.network, algo.bins, env_fn, 2, seed=3)
    assert [e.episode_return for e in a] == [e.episode_return for e in b]
    assert all(len(e.actions) == e.length == 12 for e in a)


def test_bad_dataset_or_env_names_the_key(dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="data.path"):
        QTransformerAlgorithm(_cfg(dataset, tmp_path, data={"path": str(tmp_path / "none")}))
    with pytest.raises(ConfigError, match="task.env_name"):
        QTransformerAlgorithm(
            _cfg(
                dataset, tmp_path, task={"max_episode_steps": 12, "env_name": "memrl/Pendulum-P-v0"}
            )
        )
