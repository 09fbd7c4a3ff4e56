"""Config sections of the off-policy algorithms and the train dispatch (no Ray started)."""

from __future__ import annotations

import importlib.util

import pytest

from memrl.config import ConfigError, load_config


def test_shipped_r2d2_configs_load_with_paper_defaults():
    for name in ("r2d2/tmaze_gru", "r2d2/tmaze_gtrxl", "r2d2/popgym_gru"):
        cfg = load_config(name)
        assert cfg.algo == "r2d2"
        assert cfg.r2d2.n_step == 5 and cfg.r2d2.value_rescaling and cfg.r2d2.double_q
        assert cfg.r2d2.epsilon == 0.4 and cfg.r2d2.epsilon_alpha == 7.0
        assert cfg.replay.alpha == 0.9 and cfg.replay.beta == 0.6 and cfg.replay.eta == 0.9
    kwargs = load_config("r2d2/tmaze_gru").r2d2.r2d2_kwargs()
    assert "lr" not in kwargs and kwargs["adam_eps"] == 1e-3


def test_td3_section_has_exactly_the_agreed_fields():
    cfg = load_config("r2d2/tmaze_gru", ["algo=td3"])
    assert cfg.td3.model_dump() == {
        "actor_lr": 3e-4,
        "critic_lr": 3e-4,
        "gamma": 0.99,
        "tau": 0.005,
        "policy_delay": 2,
        "target_noise": 0.2,
        "target_noise_clip": 0.5,
        "exploration_noise": 0.1,
        "shared_core": False,
        "batch_size": 32,
        "learning_starts": 1000,
        "updates_per_iteration": 1,
        "grad_clip": None,
    }


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("replay.chunk_overlap=80", "replay"),
        ("replay.state_storage=int8", "replay.state_storage"),
        ("r2d2.n_stp=3", "r2d2.n_stp"),
        ("r2d2.gamma=1.5", "r2d2.gamma"),
        ("algo=dqn", "algo"),
    ],
)
def test_bad_offpolicy_values_name_their_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config("r2d2/tmaze_gru", [override])


def test_td3_dispatch_is_clear_until_it_exists():
    from memrl.session import offpolicy_builder

    assert offpolicy_builder("r2d2").__name__ == "build_r2d2_config"
    if importlib.util.find_spec("memrl.rllib.td3") is None:
        with pytest.raises(ConfigError, match="td3.*not available"):
            offpolicy_builder("td3")
    else:
        assert callable(offpolicy_builder("td3"))
