"""``memrl eval``: the statistics against hand-computed values (a run on a real checkpoint is in
test_train.py, beside the run that makes it)."""

from __future__ import annotations

import math
import statistics

import pytest

from memrl.config import EvaluationConfig
from memrl.evaluate import (
    episode_success,
    main,
    mean_interval,
    score_episodes,
    t_quantile,
    wilson_interval,
)


def _wilson_by_hand(k: int, n: int, z: float) -> tuple[float, float]:
    # Wilson (1927): (p + z^2/2n -+ z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n)
    p = k / n
    root = z * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
    return (
        (p + z**2 / (2 * n) - root) / (1 + z**2 / n),
        (p + z**2 / (2 * n) + root) / (1 + z**2 / n),
    )


@pytest.mark.parametrize(
    ("k", "n", "expected"),
    [
        # Worked by hand with z = 1.959964:
        # 8/10: p=.8, z^2=3.841459, denom=1.3841459, centre=(.8+.1920729)/1.3841459=.716735,
        #   half=1.959964*sqrt(.016+.0096036)/1.3841459=.226608 -> (.4902, .9433)
        (8, 10, (0.4902, 0.9433)),
        # 0/10: centre=.1920729/1.3841459=.138767, half=1.959964*sqrt(.0096036)/1.3841459=.138767
        #   -> (0, .2775)
        (0, 10, (0.0, 0.2775)),
        # 50/100: centre=.5, half=1.959964*sqrt(.0025+.00009604)/1.03841459=.096170
        (50, 100, (0.4038, 0.5962)),
    ],
)
def test_wilson_interval_matches_hand_computed_values(k, n, expected):
    low, high = wilson_interval(k, n)
    assert low == pytest.approx(expected[0], abs=1e-4)
    assert high == pytest.approx(expected[1], abs=1e-4)
    by_hand = _wilson_by_hand(k, n, statistics.NormalDist().inv_cdf(0.975))
    assert (low, high) == pytest.approx((max(0.0, by_hand[0]), by_hand[1]), abs=1e-12)


def test_wilson_interval_rejects_impossible_counts():
    with pytest.raises(ValueError):
        wilson_interval(3, 2)
    with pytest.raises(ValueError):
        wilson_interval(0, 0)


@pytest.mark.parametrize(
    ("p", "df", "expected"),
    [
        # closed forms: df 1 is Cauchy, tan(pi (p - 1/2)); df 2 is (2p-1)/sqrt(2p(1-p))
        (0.975, 1, math.tan(math.pi * 0.475)),
        (0.975, 2, 0.95 / math.sqrt(2 * 0.975 * 0.025)),
        # standard table values t_{0.975, df}
        (0.975, 3, 3.1824),
        (0.975, 10, 2.2281),
        (0.975, 30, 2.0423),
        (0.995, 10, 3.1693),
        (0.95, 120, 1.6577),
    ],
)
def test_t_quantile_matches_closed_forms_and_tables(p, df, expected):
    assert t_quantile(p, df) == pytest.approx(expected, abs=1e-4)


def test_t_quantile_rejects_bad_arguments():
    with pytest.raises(ValueError, match="df >= 1"):
        t_quantile(0.975, 0)
    with pytest.raises(ValueError, match="0 < p < 1"):
        t_quantile(1.0, 5)


def test_mean_interval_by_hand():
    values = [1.0, 2.0, 3.0, 4.0]
    # mean 2.5, sd sqrt(5/3)=1.290994, se .645497, t(.975, 3)=3.182446 -> half 2.054260
    mean, low, high = mean_interval(values)
    assert mean == pytest.approx(2.5)
    assert (low, high) == pytest.approx((2.5 - 2.05426, 2.5 + 2.05426), abs=1e-4)
    assert mean_interval([7.0]) == (7.0, 7.0, 7.0)


def test_success_rules_in_order():
    tmaze = EvaluationConfig(success_final_reward=4.0)
    assert episode_success({"success": True}, -1.0, -5.0, tmaze, True) is True
    assert episode_success({"success": False}, 4.0, 3.0, tmaze, True) is False
    # the env reports success on other episodes: one cut off without it failed
    assert episode_success({}, -0.1, -100.0, tmaze, True) is False
    assert episode_success({}, 4.0, 3.1, tmaze, False) is True
    assert episode_success({}, -1.0, -1.5, tmaze, False) is False
    by_return = EvaluationConfig(success_threshold=0.5)
    assert episode_success({}, 0.0, 0.6, by_return, False) is True
    assert episode_success({}, 0.0, 0.5, by_return, False) is False
    assert episode_success({}, 1.0, 30.0, EvaluationConfig(), False) is None


def test_score_episodes_reports_undefined_success():
    scored = score_episodes([1.0, 3.0], [10, 20], [{}, {}], [0.0, 1.0], EvaluationConfig())
    assert scored["success_rate"] is None and scored["success_ci95"] is None
    assert scored["return_mean"] == pytest.approx(2.0)
    assert scored["length_mean"] == pytest.approx(15.0)


def test_eval_of_a_missing_checkpoint_is_an_error(tmp_path, capsys):
    assert main([str(tmp_path)]) == 2
    assert "no memrl checkpoint" in capsys.readouterr().out
