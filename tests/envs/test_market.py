"""Market env: schema errors, features without look-ahead, costs, reward, seeding, truncation."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest
from gymnasium.utils.env_checker import check_env

from memrl.envs import make_env
from memrl.envs.market import (
    FEATURES,
    WARMUP,
    MarketEnv,
    bars_to_table,
    compute_features,
    load_bars,
    synthetic_bars,
)


def test_spaces_and_check_env() -> None:
    env = make_env("memrl/Market-v0", synthetic_n=2000)
    assert env.observation_space == gym.spaces.Box(-10, 10, (len(FEATURES) + 1,), np.float32)
    assert env.action_space == gym.spaces.Box(-1, 1, (1,), np.float32)
    check_env(MarketEnv(synthetic_n=2000), skip_render_check=True)


def test_synthetic_series_switches_regimes_and_is_valid_ohlc() -> None:
    bars = synthetic_bars(20_000, seed=1)
    assert set(np.unique(bars["regime"])) == {0, 1, 2}
    assert (bars["high"] >= np.maximum(bars["open"], bars["close"])).all()
    assert (bars["low"] <= np.minimum(bars["open"], bars["close"])).all()
    ret = np.diff(np.log(bars["close"]))
    reg = bars["regime"][1:]
    assert ret[reg == 0].mean() > 0 > ret[reg == 1].mean()  # bull drifts up, bear down
    np.testing.assert_array_equal(
        synthetic_bars(500, seed=3)["close"], synthetic_bars(500, seed=3)["close"]
    )


def test_features_do_not_look_ahead() -> None:
    bars = synthetic_bars(300, seed=2)
    full = compute_features(bars)
    cut = compute_features({k: v[:200] for k, v in bars.items()})
    np.testing.assert_allclose(full[:200], cut, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("suffix", [".parquet", ".arrow"])
def test_file_round_trip(tmp_path: Path, suffix: str) -> None:
    bars = synthetic_bars(500, seed=4)
    path = tmp_path / f"bars{suffix}"
    table = bars_to_table(bars)
    if suffix == ".arrow":
        feather.write_feather(table, path)
    else:
        pq.write_table(table, path)
    loaded = load_bars(path)
    np.testing.assert_array_equal(loaded["close"], bars["close"])
    np.testing.assert_array_equal(loaded["timestamp"], bars["timestamp"])
    env = MarketEnv(data_path=str(path), episode_len=50)
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)


def _write(tmp_path: Path, table: pa.Table) -> Path:
    path = tmp_path / "bad.parquet"
    pq.write_table(table, path)
    return path


def test_bad_schema_errors_name_the_column(tmp_path: Path) -> None:
    good = bars_to_table(synthetic_bars(100, seed=0))
    with pytest.raises(ValueError, match="missing column 'volume'"):
        load_bars(_write(tmp_path, good.drop(["volume"])))
    as_text = good.set_column(4, "close", pa.array([str(x) for x in good["close"].to_pylist()]))
    with pytest.raises(ValueError, match="column 'close' has type string"):
        load_bars(_write(tmp_path, as_text))
    ts_text = good.set_column(0, "timestamp", pa.array(["x"] * len(good)))
    with pytest.raises(ValueError, match="column 'timestamp' has type string"):
        load_bars(_write(tmp_path, ts_text))
    reversed_ = good.set_column(0, "timestamp", pa.array(good["timestamp"].to_pylist()[::-1]))
    with pytest.raises(ValueError, match="'timestamp' must strictly increase"):
        load_bars(_write(tmp_path, reversed_))
    with pytest.raises(FileNotFoundError):
        load_bars(tmp_path / "nope.parquet")


def test_reward_is_log_equity_growth_with_costs() -> None:
    env = MarketEnv(synthetic_n=1000, cost_bps=10.0, episode_len=20)
    env.reset(seed=0, options={"start": 100})
    close = synthetic_bars(1000, 0)["close"]
    _, r1, *_, info1 = env.step(np.array([1.0], np.float32))
    expected = np.log(1 - 10e-4 * 1.0 + 1.0 * (close[101] / close[100] - 1))
    assert r1 == pytest.approx(expected) and info1["cost"] == pytest.approx(1e-3)
    _, r2, *_ = env.step(np.array([-1.0], np.float32))  # flip: cost on a change of 2
    assert r2 == pytest.approx(np.log(1 - 2e-3 - (close[102] / close[101] - 1)))
    _, r3, *_ = env.step(np.array([0.0], np.float32))
    assert r3 == pytest.approx(np.log(1 - 1e-3))  # flat: only the cost of closing


def test_seeding_truncation_and_termination() -> None:
    def rollout(seed: int) -> list:
        env = MarketEnv(synthetic_n=3000, episode_len=30)
        env.action_space.seed(seed)
        out = [env.reset(seed=seed)[0].tolist()]
        for t in range(1, 31):
            obs, r, te, tr, _ = env.step(env.action_space.sample())
            out.append((obs.tolist(), r))
            assert not te and tr == (t == 30)
        return out

    assert rollout(0) == rollout(0) and rollout(0) != rollout(1)
    env = MarketEnv(synthetic_n=3000, episode_len=2000, min_equity=0.99, cost_bps=50.0)
    env.reset(seed=0)
    te = tr = False
    n = 0
    while not (te or tr):
        _, _, te, tr, info = env.step(np.array([1.0 if n % 2 else -1.0], np.float32))
        n += 1
    assert te and not tr and info["equity"] < 0.99


def test_bad_kwargs() -> None:
    for kwargs, field in [
        ({"episode_len": 0}, "episode_len"),
        ({"cost_bps": -1.0}, "cost_bps"),
        ({"min_equity": 1.5}, "min_equity"),
    ]:
        with pytest.raises(ValueError, match=field):
            MarketEnv(synthetic_n=500, **kwargs)
    with pytest.raises(ValueError, match="unknown kwarg.*cost_bps"):
        make_env("memrl/Market-v0", fee=1.0)
    with pytest.raises(ValueError, match="start must be in"):
        MarketEnv(synthetic_n=500).reset(options={"start": WARMUP - 1})
