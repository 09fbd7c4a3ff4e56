"""R2D2's math: value rescaling, n-step double-Q targets against hand-computed values, Ape-X
epsilons (per actor, per env of an env runner)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("ray")

from memrl.rllib.offpolicy import actor_indices  # noqa: E402
from memrl.rllib.r2d2 import (  # noqa: E402
    ape_x_epsilons,
    inverse_value_rescale,
    n_step_targets,
    value_rescale,
)


def test_value_rescale_matches_formula_and_inverts():
    x = torch.tensor([-1000.0, -3.0, -0.5, 0.0, 0.2, 1.0, 8.0, 1e4], dtype=torch.float64)
    eps = 1e-3
    expected = torch.sign(x) * (torch.sqrt(x.abs() + 1) - 1) + eps * x
    torch.testing.assert_close(value_rescale(x, eps), expected)
    torch.testing.assert_close(inverse_value_rescale(value_rescale(x, eps), eps), x)
    torch.testing.assert_close(value_rescale(inverse_value_rescale(x, eps), eps), x)
    assert value_rescale(torch.tensor(3.0), eps) == pytest.approx(1.0 + 3e-3)


def _targets(terminated, mask, rescale=False):
    reward = torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]], dtype=torch.float64)
    boot = torch.tensor([[10.0, 20.0, 30.0, 40.0, 50.0, 60.0]], dtype=torch.float64)
    return n_step_targets(
        reward,
        torch.tensor([terminated]),
        torch.tensor([mask]),
        boot,
        gamma=0.5,
        n=2,
        rescale=rescale,
    )


def test_n_step_terminal_inside_window_and_padding():
    # Steps 0..3 valid, the episode terminates after step 3, steps 4, 5 are padding.
    target, valid = _targets([0, 0, 0, 1, 0, 0], [1, 1, 1, 1, 0, 0])
    # t0: 1 + .5*2 + .25*Q(s2)=30; t1: 2 + .5*3 + .25*Q(s3)=40 (s3 is still a live state);
    # t2: 3 + .5*4 (terminal inside the window: no bootstrap); t3: 4.
    np.testing.assert_allclose(target[0].numpy(), [9.5, 13.5, 5.0, 4.0, 0.0, 0.0])
    assert valid[0].tolist() == [True, True, True, True, False, False]


def test_n_step_truncated_end_bootstraps_from_last_stored_state():
    # Same steps, but the episode was cut (truncated / sequence end): no termination.
    target, valid = _targets([0, 0, 0, 0, 0, 0], [1, 1, 1, 1, 0, 0])
    # t2: only step 3 follows -> 3 + .5*Q(s3)=40; t3: nothing to bootstrap from -> no target.
    np.testing.assert_allclose(target[0, :3].numpy(), [9.5, 13.5, 23.0])
    assert valid[0].tolist() == [True, True, True, False, False, False]


def test_n_step_full_sequence_and_rescaling():
    target, valid = _targets([0] * 6, [1] * 6)
    np.testing.assert_allclose(target[0, 3:5].numpy(), [4 + 0.5 * 5 + 0.25 * 60, 5 + 0.5 * 60])
    assert valid[0].tolist() == [True] * 5 + [False]
    rescaled, _ = _targets([0, 0, 0, 1, 0, 0], [1, 1, 1, 1, 0, 0], rescale=True)
    h = lambda v: value_rescale(torch.tensor(v, dtype=torch.float64))  # noqa: E731
    h_inv = lambda v: inverse_value_rescale(torch.tensor(v, dtype=torch.float64))  # noqa: E731
    # The bootstrap values are rescaled Q-values: unscale, add the rewards, rescale.
    assert float(rescaled[0, 0]) == pytest.approx(float(h(2.0 + 0.25 * h_inv(30.0))))
    assert float(rescaled[0, 2]) == pytest.approx(float(h(5.0)))


def test_n_step_rows_are_independent():
    reward = torch.ones(2, 4)
    boot = torch.zeros(2, 4)
    terminated = torch.tensor([[0, 1, 0, 0], [0, 0, 0, 0]], dtype=torch.bool)
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]], dtype=torch.bool)
    target, valid = n_step_targets(reward, terminated, mask, boot, gamma=1.0, n=3, rescale=False)
    np.testing.assert_allclose(target.numpy(), [[2, 1, 0, 0], [3, 2, 1, 0]])
    assert valid.tolist() == [[True, True, False, False], [True, True, True, False]]


def test_ape_x_epsilons():
    eps = ape_x_epsilons(8, 0.4, 7.0)
    assert eps[0] == pytest.approx(0.4)
    assert eps[-1] == pytest.approx(0.4**8)
    assert eps[3] == pytest.approx(0.4 ** (1 + 3 / 7 * 7))
    assert np.all(np.diff(eps) < 0)
    assert ape_x_epsilons(1, 0.4, 7.0).tolist() == [0.4]
    with pytest.raises(ValueError, match="num_actors"):
        ape_x_epsilons(0)


def test_actor_indices_number_every_env_of_every_runner():
    ids, total = actor_indices(worker_index=2, num_env_runners=3, num_envs=4)
    assert ids.tolist() == [4, 5, 6, 7] and total == 12
    ids, total = actor_indices(worker_index=0, num_env_runners=0, num_envs=4)
    assert ids.tolist() == [0, 1, 2, 3] and total == 4
