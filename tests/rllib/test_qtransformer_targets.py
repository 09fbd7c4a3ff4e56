"""Q-Transformer's pure pieces: discretisation, targets, MC bound, loss, hyperparameters."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pydantic
import pytest
import torch

from memrl.rllib.qtransformer import (
    ActionBins,
    QTransformerHyperparameters,
    autoregressive_targets,
    mc_lower_bound,
    qtransformer_loss,
    returns_to_go,
)

# --- discretisation ---------------------------------------------------------------------------


def test_round_trip_within_half_a_bin_and_edges_clipped() -> None:
    low, high = np.array([-2, 0, 10], np.float32), np.array([2, 1, 13], np.float32)
    space = gym.spaces.Box(low, high, dtype=np.float32)
    for num_bins in (2, 3, 256):
        bins = ActionBins(space, num_bins)
        rng = np.random.default_rng(num_bins)
        action = rng.uniform(space.low, space.high, size=(1000, 3)).astype(np.float32)
        back = bins.to_action(bins.to_bins(action))
        half = (space.high - space.low) / (2 * num_bins)
        assert np.all(np.abs(back - action) <= half * (1 + 1e-5))
        assert back.dtype == np.float32
        # Bin formula and the edges: low -> bin 0, high -> bin B-1, outside -> clipped.
        b = bins.to_bins(np.stack([space.low, space.high, space.low - 5, space.high + 5]))
        np.testing.assert_array_equal(b, [[0] * 3, [num_bins - 1] * 3, [0] * 3, [num_bins - 1] * 3])
    bins = ActionBins(gym.spaces.Box(0.0, 1.0, (1,), np.float32), 4)
    np.testing.assert_array_equal(
        bins.to_bins([[0.0], [0.249], [0.25], [0.74], [0.99]])[:, 0], [0, 0, 1, 2, 3]
    )
    np.testing.assert_allclose(bins.to_action([[0], [3]])[:, 0], [0.125, 0.875])


def test_discrete_is_one_dimension() -> None:
    bins = ActionBins(gym.spaces.Discrete(5, start=2), 256)
    assert (bins.num_dims, bins.num_bins) == (1, 5)
    a = np.array([2, 3, 6])
    np.testing.assert_array_equal(bins.to_bins(a), [[0], [1], [4]])
    np.testing.assert_array_equal(bins.to_action(bins.to_bins(a)), a)


def test_discretisation_errors() -> None:
    with pytest.raises(ValueError, match="finite"):
        ActionBins(gym.spaces.Box(-np.inf, np.inf, (2,), np.float32), 8)
    with pytest.raises(ValueError, match="rank-1 Box or a Discrete"):
        ActionBins(gym.spaces.MultiBinary(3), 8)
    bins = ActionBins(gym.spaces.Box(-1.0, 1.0, (2,), np.float32), 8)
    with pytest.raises(ValueError, match=r"\[\.\.\., 2\]"):
        bins.to_bins(np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"in \[0, 8\)"):
        bins.to_action(np.array([[0, 8]]))


# --- targets ----------------------------------------------------------------------------------


def _q_target() -> torch.Tensor:
    """[B=2, T=3, d=3, NB=2] with distinct values so an off-by-one shows."""
    return torch.arange(2 * 3 * 3 * 2, dtype=torch.float32).reshape(2, 3, 3, 2) / 10.0


def test_targets_hand_computed() -> None:
    q = _q_target()
    best = q.amax(-1)  # best[b, t, i] = max over bins of Q'^{i+1}
    reward = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    terminated = torch.tensor([[False, False, True], [False, False, False]])
    mask = torch.tensor([[True, True, True], [True, True, False]])  # row 1: 2 steps, unfinished
    gamma = 0.5
    y, valid = autoregressive_targets(q, reward, terminated, mask, gamma=gamma, n=1)
    # Dimensions 1, 2 (0-based 0, 1): the next dimension's max at the same step, no r, no gamma.
    for b in range(2):
        for t in range(3):
            if mask[b, t]:
                assert y[b, t, 0] == best[b, t, 1] and y[b, t, 1] == best[b, t, 2]
    # Last dimension: r_t + gamma * max Q'^1 at t + 1; no bootstrap through termination.
    assert torch.isclose(y[0, 0, 2], 1.0 + gamma * best[0, 1, 0])
    assert torch.isclose(y[0, 1, 2], 2.0 + gamma * best[0, 2, 0])
    assert y[0, 2, 2] == 3.0
    assert torch.isclose(y[1, 0, 2], 4.0 + gamma * best[1, 1, 0])
    expected_valid = torch.tensor(
        [[[1, 1, 1], [1, 1, 1], [1, 1, 1]], [[1, 1, 1], [1, 1, 0], [0, 0, 0]]], dtype=torch.bool
    )
    assert torch.equal(valid, expected_valid)
    assert torch.all(y[~valid] == 0)
    # Two steps: r_t + gamma r_{t+1} + gamma^2 max Q'^1(h_{t+2}); cut at the terminal step.
    y2, _ = autoregressive_targets(q, reward, terminated, mask, gamma=gamma, n=2)
    assert torch.isclose(y2[0, 0, 2], 1.0 + gamma * 2.0 + gamma**2 * best[0, 2, 0])
    assert torch.isclose(y2[0, 1, 2], torch.tensor(2.0 + gamma * 3.0))
    assert torch.equal(y2[..., :2], y[..., :2])


def test_single_dimension_is_plain_q_learning() -> None:
    q = torch.tensor([[[[0.0, 2.0]], [[5.0, 1.0]]]])  # [1, 2, 1, 2]
    y, valid = autoregressive_targets(
        q,
        torch.tensor([[1.0, 1.0]]),
        torch.tensor([[False, True]]),
        torch.ones(1, 2, dtype=torch.bool),
        gamma=0.9,
    )
    assert torch.allclose(y[..., 0], torch.tensor([[1.0 + 0.9 * 5.0, 1.0]]))
    assert valid.all()


def test_mc_bound_is_max_of_target_and_return() -> None:
    q = _q_target()
    reward = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    terminated = torch.tensor([[False, False, True], [False, False, False]])
    mask = torch.tensor([[True, True, True], [True, True, False]])
    bound = torch.tensor([[10.0, 0.0, -1.0], [-np.inf, -np.inf, -np.inf]])
    y, valid = autoregressive_targets(q, reward, terminated, mask, gamma=0.5, n=1)
    yb, valid_b = autoregressive_targets(
        q, reward, terminated, mask, gamma=0.5, n=1, mc_return=bound
    )
    assert torch.equal(valid, valid_b)
    assert torch.equal(yb[valid], torch.maximum(y, bound[..., None])[valid])
    assert torch.all(yb[0, 0] == 10.0) and torch.equal(yb[1], y[1])


def test_returns_to_go_equals_direct_sum() -> None:
    rng = np.random.default_rng(0)
    reward = rng.normal(size=37)
    gamma = 0.97
    direct = [sum(gamma ** (k - t) * reward[k] for k in range(t, 37)) for t in range(37)]
    np.testing.assert_allclose(returns_to_go(reward, gamma), direct, rtol=1e-12)
    np.testing.assert_allclose(mc_lower_bound(reward, True, gamma), direct, rtol=1e-6)
    assert np.all(mc_lower_bound(reward, False, gamma) == -np.inf)


# --- loss -------------------------------------------------------------------------------------


def test_loss_hand_computed() -> None:
    q = torch.tensor([[[[1.0, 3.0, 5.0]]]])  # [1, 1, 1, 3]
    bins = torch.tensor([[[1]]])
    y = torch.tensor([[[2.0]]])
    valid = torch.ones(1, 1, 1, dtype=torch.bool)
    loss, info = qtransformer_loss(q, bins, y, valid, alpha=2.0, r_min=1.0)
    assert torch.isclose(info["td_loss"], torch.tensor(0.5 * (3.0 - 2.0) ** 2))
    assert torch.isclose(info["conservative_loss"], torch.tensor(0.5 * 2.0 * (0.0 + 16.0) / 2))
    assert torch.isclose(loss, info["td_loss"] + info["conservative_loss"])


def test_loss_value_scale_divides_the_errors() -> None:
    """scale s: both terms are the unit loss of (Q - y) / s and (Q - r_min) / s."""
    q = torch.tensor([[[[100.0, 300.0, 500.0]]]])
    bins, valid = torch.tensor([[[1]]]), torch.ones(1, 1, 1, dtype=torch.bool)
    loss, info = qtransformer_loss(
        q, bins, torch.tensor([[[200.0]]]), valid, alpha=2.0, r_min=100.0, scale=100.0
    )
    assert torch.isclose(info["td_loss"], torch.tensor(0.5 * 1.0**2))
    assert torch.isclose(info["conservative_loss"], torch.tensor(0.5 * 2.0 * (0.0 + 16.0) / 2))
    assert torch.isclose(loss, info["td_loss"] + info["conservative_loss"])


@pytest.mark.parametrize("shape", [(1, 1, 1), (4, 1, 1), (1, 9, 1), (1, 1, 5), (3, 7, 2)])
def test_loss_invariant_to_batch_sequence_and_dims(shape: tuple[int, int, int]) -> None:
    """Q = 3 on the taken bin with target 1, Q = 2 elsewhere: the same loss for every shape."""
    num_bins = 6
    bins = torch.randint(0, num_bins, shape)
    q = torch.full((*shape, num_bins), 2.0).scatter(-1, bins[..., None], 3.0)
    y = torch.ones(shape)
    valid = torch.ones(shape, dtype=torch.bool)
    loss, info = qtransformer_loss(q, bins, y, valid, alpha=1.0, r_min=0.0)
    assert torch.isclose(info["td_loss"], torch.tensor(0.5 * 4.0))
    assert torch.isclose(info["conservative_loss"], torch.tensor(0.5 * 4.0))
    # Invalid entries count for nothing.
    shape2 = (shape[0], shape[1] + 3, shape[2])
    bins2 = torch.cat([bins, torch.zeros(shape[0], 3, shape[2], dtype=torch.long)], dim=1)
    q2 = torch.cat([q, torch.full((shape[0], 3, shape[2], num_bins), 100.0)], dim=1)
    valid2 = torch.zeros(shape2, dtype=torch.bool)
    valid2[:, : shape[1]] = True
    loss2, _ = qtransformer_loss(q2, bins2, torch.ones(shape2), valid2, alpha=1.0, r_min=0.0)
    assert torch.isclose(loss, loss2)


def test_hyperparameters_defaults_and_errors() -> None:
    hp = QTransformerHyperparameters()
    assert (hp.bins, hp.gamma, hp.conservative_weight, hp.r_min, hp.target_ema) == (
        256,
        0.98,
        1.0,
        0.0,
        0.99,
    )
    with pytest.raises(pydantic.ValidationError, match="bin"):
        QTransformerHyperparameters(binz=3)
    with pytest.raises(pydantic.ValidationError, match="gamma"):
        QTransformerHyperparameters(gamma=1.5)
    for name, field in QTransformerHyperparameters.model_fields.items():
        assert field.description, name
