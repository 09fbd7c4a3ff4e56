"""A single-asset trading task over OHLCV bars: continuous target position, transaction costs.

Bar file schema (Parquet, or Arrow IPC/Feather by suffix ``.arrow``/``.feather``/``.ipc``), one
row per bar, sorted by time:

==========  =======================================================  ===========================
column      Arrow type                                               meaning
==========  =======================================================  ===========================
timestamp   ``timestamp[s|ms|us|ns]`` (any tz, read as UTC) or int64  bar open time (int64: ns)
open        float or integer                                         first trade price (> 0)
high        float or integer                                         highest price
low         float or integer                                         lowest price
close       float or integer                                         last trade price (> 0)
volume      float or integer                                         traded quantity (>= 0)
==========  =======================================================  ===========================

Other columns are ignored. A missing or ill-typed column, a non-positive price or a timestamp
that does not increase is a ValueError naming the column. Without a file, :func:`synthetic_bars`
generates a regime-switching series (hidden bull/bear/choppy regimes, Markov switching), so tests
and demos need no downloaded data; the hidden regime is what makes memory useful.

Step ``t``: the action ``a`` in ``Box(-1, 1, (1,), float32)`` is the target position (fraction of
equity; negative is short). Moving from position ``p`` to ``a`` costs ``cost_bps * |a - p|``
(basis points of equity); the position then earns the next bar's close-to-close return, and the
reward is the log growth of equity over the step. Observation ``Box(-10, 10, (13,), float32)``:
the 12 features of :data:`FEATURES` at the current bar (clipped to +-10) and the current
position. An episode starts at a random bar, is truncated after ``episode_len`` steps (or at the
data's end), and terminates when equity falls below ``min_equity`` of its start.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.feather as feather
import pyarrow.parquet as pq
from gymnasium import spaces

COLUMNS = ("timestamp", "open", "high", "low", "close", "volume")
FEATURES = (
    "ret_1",  # log return of the last bar, x100
    "ret_5",  # log return over 5 bars, x100
    "ret_20",  # log return over 20 bars, x100
    "volatility_20",  # std of 1-bar log returns over 20 bars, x100
    "range",  # (high - low) / close, x100
    "volume_z",  # log volume z-score over 20 bars
    "rsi_14",  # Wilder RSI(14) mapped from [0, 100] to [-1, 1]
    "macd_hist",  # MACD(12, 26, 9) histogram / close, x100
    "tod_sin",  # time of day
    "tod_cos",
    "dow_sin",  # day of week
    "dow_cos",
)
WARMUP = 40  # bars before the first usable observation (longest indicator window + margin)
FEATURE_CLIP = 10.0


def _ema(x: np.ndarray, span: int) -> np.ndarray:
    alpha = 2.0 / (span + 1.0)
    out = np.empty_like(x)
    acc = x[0]
    for i, v in enumerate(x):  # recursive filter; one pass at load time
        acc = alpha * v + (1.0 - alpha) * acc
        out[i] = acc
    return out


def _rolling(x: np.ndarray, window: int, fn: str) -> np.ndarray:
    view = np.lib.stride_tricks.sliding_window_view(x, window)
    stat = getattr(view, fn)(axis=-1)
    return np.concatenate([np.full(window - 1, stat[0]), stat])


def compute_features(bars: dict[str, np.ndarray]) -> np.ndarray:
    """Features of :data:`FEATURES` for every bar, float32 ``[N, 12]``, clipped to +-10.

    Each row uses only bars up to and including its own (no look-ahead).
    """
    close, volume = bars["close"].astype(np.float64), bars["volume"].astype(np.float64)
    logp = np.log(close)
    r1 = np.diff(logp, prepend=logp[0])

    def lagged(k: int) -> np.ndarray:
        return logp - np.concatenate([np.full(k, logp[0]), logp[:-k]])

    logv = np.log1p(volume)
    vol_mean, vol_std = _rolling(logv, 20, "mean"), _rolling(logv, 20, "std")
    gain, loss = np.maximum(r1, 0.0), np.maximum(-r1, 0.0)
    # Wilder smoothing is an EMA with alpha = 1/14, i.e. span 27.
    avg_gain, avg_loss = _ema(gain, 27), _ema(loss, 27)
    rsi = 100.0 - 100.0 / (1.0 + avg_gain / np.maximum(avg_loss, 1e-12))
    macd = _ema(close, 12) - _ema(close, 26)
    hist = macd - _ema(macd, 9)
    seconds = bars["timestamp"].astype("datetime64[s]").astype(np.int64)
    day = 86400.0
    tod = 2 * math.pi * (seconds % 86400) / day
    dow = 2 * math.pi * (((seconds // 86400) + 3) % 7) / 7.0  # 1970-01-01 was a Thursday
    feats = np.stack(
        [
            100 * r1,
            100 * lagged(5),
            100 * lagged(20),
            100 * _rolling(r1, 20, "std"),
            100 * (bars["high"] - bars["low"]) / close,
            (logv - vol_mean) / np.maximum(vol_std, 1e-6),
            rsi / 50.0 - 1.0,
            100 * hist / close,
            np.sin(tod),
            np.cos(tod),
            np.sin(dow),
            np.cos(dow),
        ],
        axis=1,
    )
    return np.clip(np.nan_to_num(feats), -FEATURE_CLIP, FEATURE_CLIP).astype(np.float32)


def _check_table(table: pa.Table, source: str) -> dict[str, np.ndarray]:
    names = set(table.column_names)
    for col in COLUMNS:
        if col not in names:
            raise ValueError(
                f"{source}: missing column {col!r}; the schema needs {list(COLUMNS)} "
                f"(found {sorted(names)})"
            )
    ts_type = table.schema.field("timestamp").type
    if pa.types.is_timestamp(ts_type):
        ts = pc.cast(table["timestamp"], pa.timestamp("ns")).to_numpy().astype("datetime64[ns]")
    elif pa.types.is_integer(ts_type):
        ts = table["timestamp"].to_numpy().astype("datetime64[ns]")
    else:
        raise ValueError(
            f"{source}: column 'timestamp' has type {ts_type}; expected timestamp or int64 (ns)"
        )
    bars: dict[str, np.ndarray] = {"timestamp": ts}
    for col in COLUMNS[1:]:
        typ = table.schema.field(col).type
        if not (pa.types.is_floating(typ) or pa.types.is_integer(typ)):
            raise ValueError(f"{source}: column {col!r} has type {typ}; expected float or integer")
        if table[col].null_count:
            raise ValueError(f"{source}: column {col!r} has {table[col].null_count} null(s)")
        bars[col] = table[col].to_numpy().astype(np.float64)
    for col in ("open", "high", "low", "close"):
        if not (bars[col] > 0).all():
            raise ValueError(f"{source}: column {col!r} has non-positive prices")
    if (bars["volume"] < 0).any():
        raise ValueError(f"{source}: column 'volume' has negative values")
    if len(ts) > 1 and not (np.diff(ts) > np.timedelta64(0, "ns")).all():
        raise ValueError(f"{source}: column 'timestamp' must strictly increase")
    return bars


def load_bars(path: str | Path) -> dict[str, np.ndarray]:
    """Read and validate a bar file (see the module docstring for the schema).

    Returns ``{"timestamp": datetime64[ns], "open"/"high"/"low"/"close"/"volume": float64}``.
    Raises FileNotFoundError, or ValueError naming the offending column.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"bar file {path} does not exist")
    if path.suffix in (".arrow", ".feather", ".ipc"):
        table = feather.read_table(path)
    else:
        table = pq.read_table(path)
    return _check_table(table, str(path))


def bars_to_table(bars: dict[str, np.ndarray]) -> pa.Table:
    """The Arrow table of ``bars`` in the file schema (write it with ``pyarrow.parquet``)."""
    return pa.table(
        {
            "timestamp": pa.array(bars["timestamp"].astype("datetime64[ns]"), pa.timestamp("ns")),
            **{c: pa.array(bars[c], pa.float64()) for c in COLUMNS[1:]},
        }
    )


# regime -> (drift per bar, volatility per bar) of log returns; hidden from the agent
REGIMES = {"bull": (4e-4, 0.004), "bear": (-4e-4, 0.006), "choppy": (0.0, 0.010)}


def synthetic_bars(
    n: int = 100_000, seed: int = 0, bar_seconds: int = 300, switch_prob: float = 0.005
) -> dict[str, np.ndarray]:
    """A regime-switching OHLCV series of ``n`` bars (see :data:`REGIMES`).

    The regime is a Markov chain that leaves its state with probability ``switch_prob`` per bar;
    log returns are Gaussian with the regime's drift and volatility; volume grows with |return|.
    Returns the same dict as :func:`load_bars` plus ``"regime"`` (int, index into REGIMES).
    """
    if n < WARMUP + 2:
        raise ValueError(f"n must be >= {WARMUP + 2}, got {n}")
    rng = np.random.default_rng(seed)
    params = np.array(list(REGIMES.values()))
    switches = rng.random(n) < switch_prob
    jumps = rng.integers(1, len(REGIMES), size=n)  # move to one of the other regimes
    regime = np.cumsum(np.where(switches, jumps, 0)) % len(REGIMES)
    drift, vol = params[regime, 0], params[regime, 1]
    ret = drift + vol * rng.standard_normal(n)
    close = 100.0 * np.exp(np.cumsum(ret))
    open_ = np.concatenate([[100.0], close[:-1]])
    wiggle = np.abs(rng.standard_normal((2, n))) * vol * 0.5
    high = np.maximum(open_, close) * np.exp(wiggle[0])
    low = np.minimum(open_, close) * np.exp(-wiggle[1])
    volume = rng.lognormal(mean=10.0, sigma=0.3, size=n) * (1.0 + 50.0 * np.abs(ret))
    start = np.datetime64("2024-01-01T00:00:00", "s")
    timestamp = (start + np.arange(n) * np.timedelta64(bar_seconds, "s")).astype("datetime64[ns]")
    return {
        "timestamp": timestamp,
        "open": open_,
        "high": high,
        "low": low,
        "close": close,
        "volume": volume,
        "regime": regime,
    }


class MarketEnv(gym.Env[np.ndarray, np.ndarray]):
    """Trade one asset over bars (see the module docstring).

    Args:
        data_path: bar file; None uses :func:`synthetic_bars` (``synthetic_n``, ``synthetic_seed``).
        episode_len: steps before truncation (>= 1).
        cost_bps: cost per unit of position change, in basis points of equity (>= 0).
        min_equity: the episode terminates when equity < ``min_equity`` x its start, in (0, 1).
        synthetic_n, synthetic_seed: size and seed of the synthetic series.

    Raises:
        ValueError: a kwarg out of range, a bad file (naming the column), too few bars.
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(
        self,
        data_path: str | None = None,
        episode_len: int = 1000,
        cost_bps: float = 1.0,
        min_equity: float = 0.5,
        synthetic_n: int = 100_000,
        synthetic_seed: int = 0,
    ) -> None:
        if not isinstance(episode_len, (int, np.integer)) or episode_len < 1:
            raise ValueError(f"episode_len must be an int >= 1, got {episode_len!r}")
        if not cost_bps >= 0:
            raise ValueError(f"cost_bps must be >= 0, got {cost_bps!r}")
        if not 0 < min_equity < 1:
            raise ValueError(f"min_equity must be in (0, 1), got {min_equity!r}")
        bars = load_bars(data_path) if data_path else synthetic_bars(synthetic_n, synthetic_seed)
        n = len(bars["close"])
        if n < WARMUP + 2:
            raise ValueError(f"need at least {WARMUP + 2} bars, got {n}")
        self.episode_len = int(episode_len)
        self.cost = float(cost_bps) * 1e-4
        self.min_equity = float(min_equity)
        self._features = compute_features(bars)
        close = bars["close"]
        self._next_return = np.append(close[1:] / close[:-1] - 1.0, 0.0)  # simple, bar t -> t+1
        self._regime = bars.get("regime")
        self._n = n
        self.observation_space = spaces.Box(
            -FEATURE_CLIP, FEATURE_CLIP, (len(FEATURES) + 1,), np.float32
        )
        self.action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)
        self._t = self._start = WARMUP
        self._position = 0.0
        self._equity = 1.0
        self._done = True

    def _obs(self) -> np.ndarray:
        obs = np.empty(len(FEATURES) + 1, np.float32)
        obs[:-1] = self._features[self._t]
        obs[-1] = self._position
        return obs

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start at a random bar, or at ``options={"start": i}`` (i >= WARMUP)."""
        super().reset(seed=seed)
        last_start = self._n - 2  # at least one step with a next bar
        if options and "start" in options:
            start = int(options["start"])
            if not WARMUP <= start <= last_start:
                raise ValueError(f"reset option start must be in [{WARMUP}, {last_start}]")
        else:
            high = max(WARMUP, self._n - 1 - self.episode_len)
            start = int(self.np_random.integers(WARMUP, high + 1))
        self._t = self._start = start
        self._position, self._equity, self._done = 0.0, 1.0, False
        return self._obs(), {"equity": 1.0, "bar": start}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._done:
            raise RuntimeError("MarketEnv.step called after the episode ended; call reset()")
        target = float(np.clip(np.asarray(action, np.float64).reshape(-1)[0], -1.0, 1.0))
        cost = self.cost * abs(target - self._position)
        growth = max(1.0 - cost + target * self._next_return[self._t], 1e-12)
        self._equity *= growth
        self._position = target
        self._t += 1
        terminated = self._equity < self.min_equity
        truncated = not terminated and (
            self._t - self._start >= self.episode_len or self._t >= self._n - 1
        )
        self._done = terminated or truncated
        info: dict[str, Any] = {"equity": self._equity, "cost": cost, "bar": self._t}
        if self._regime is not None:
            info["regime"] = int(self._regime[self._t])
        return self._obs(), math.log(growth), terminated, truncated, info
