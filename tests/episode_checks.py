"""One check shared by the dataset tests: two lists of episodes hold the same steps."""

from collections.abc import Sequence

import numpy as np

from memrl.data import Episode


def assert_same_episodes(expected: Sequence[Episode], got: Sequence[Episode]) -> None:
    """Equal counts, and per episode equal obs, actions, rewards, final obs and ending."""
    assert len(expected) == len(got)
    for a, b in zip(expected, got, strict=True):
        np.testing.assert_array_equal(a.obs, b.obs)
        np.testing.assert_array_equal(a.action, b.action)
        np.testing.assert_array_equal(a.reward, b.reward)
        np.testing.assert_array_equal(a.final_obs, b.final_obs)
        assert (a.terminated, a.truncated) == (b.terminated, b.truncated)
