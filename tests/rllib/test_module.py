"""MemoryActorCritic: encoders per observation space, heads per action space, `first`, errors."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from core_kwargs import SMALL_CORE_KWARGS, STATEFUL_CORES
from ray.rllib.core.columns import Columns

from memrl.config import NetworkConfig
from memrl.rllib import FIRST, MemoryActorCritic, build_ppo_config

B, T = 3, 5
VECTOR = gym.spaces.Box(-1, 1, (4,), np.float32)
SMALL_CNN = {"cnn_filters": [[8, 4, 4], [8, 3, 2]], "cnn_out": 16}


def _module(obs_space, act_space, core="gru", model=None, **core_kwargs):
    return MemoryActorCritic(
        observation_space=obs_space,
        action_space=act_space,
        model_config={
            "core": core,
            "core_kwargs": core_kwargs or SMALL_CORE_KWARGS.get(core, {}),
            "model": model or {},
            "max_seq_len": T,
        },
    )


def _batch(module, lead=(B, T), first=None, state=None):
    obs = torch.utils._pytree.tree_map(
        lambda x: torch.as_tensor(np.stack([x for _ in range(int(np.prod(lead)))])).reshape(
            *lead, *np.shape(x)
        ),
        module.observation_space.sample(),
    )
    batch = {Columns.OBS: obs}
    if module.is_stateful():
        init = module.get_initial_state()
        batch[Columns.STATE_IN] = state or {
            k: torch.as_tensor(np.stack([v] * lead[0])) for k, v in init.items()
        }
        batch[FIRST] = first if first is not None else torch.zeros(lead, dtype=torch.bool)
    return batch


@pytest.mark.parametrize(
    "obs_space",
    [
        VECTOR,
        gym.spaces.MultiBinary(6),
        gym.spaces.Discrete(5),
        gym.spaces.MultiDiscrete([3, 4]),
        gym.spaces.Box(0, 255, (84, 84, 3), np.uint8),  # Memory Gym
        gym.spaces.Box(0, 255, (64, 64, 3), np.uint8),  # Memory Maze
        gym.spaces.Dict({"image": gym.spaces.Box(0, 255, (64, 64, 3), np.uint8), "vec": VECTOR}),
        gym.spaces.Tuple((gym.spaces.Discrete(3), VECTOR)),
    ],
    ids=lambda s: type(s).__name__ + str(getattr(s, "shape", "") or ""),
)
def test_observation_spaces(obs_space) -> None:
    module = _module(obs_space, gym.spaces.Discrete(4), model=SMALL_CNN)
    out = module.forward_train(_batch(module))
    assert out[Columns.ACTION_DIST_INPUTS].shape == (B, T, 4)
    assert module.compute_values(_batch(module)).shape == (B, T)


@pytest.mark.parametrize(
    ("act_space", "inputs", "sample_shape"),
    [
        (gym.spaces.Discrete(4), 4, ()),
        (gym.spaces.MultiDiscrete([2, 3, 4]), 9, (3,)),
        (gym.spaces.Box(-1, 1, (2,), np.float32), 4, (2,)),
    ],
)
def test_action_heads(act_space, inputs, sample_shape) -> None:
    module = _module(VECTOR, act_space)
    logits = module.forward_train(_batch(module))[Columns.ACTION_DIST_INPUTS]
    assert logits.shape == (B, T, inputs)
    dist = module.get_train_action_dist_cls().from_logits(logits)
    action = dist.sample()
    assert action.shape == (B, T, *sample_shape)
    assert dist.logp(action).shape == (B, T)


@pytest.mark.parametrize(
    "space", [gym.spaces.Text(5), gym.spaces.Box(0, 1, (2, 3, 4, 5), np.float32)]
)
def test_unsupported_observation_space_names_it(space) -> None:
    with pytest.raises(ValueError, match="unsupported observation space"):
        _module(space, gym.spaces.Discrete(2))


@pytest.mark.parametrize(
    "space", [gym.spaces.MultiBinary(3), gym.spaces.Box(-1, 1, (2, 2), np.float32)]
)
def test_unsupported_action_space_names_it(space) -> None:
    with pytest.raises(ValueError, match=r"unsupported action space .*MultiBinary|Box"):
        _module(VECTOR, space)


@pytest.mark.parametrize("core", STATEFUL_CORES)
def test_first_resets_state_at_chunk_start_and_mid_chunk(core: str) -> None:
    """With ``first`` at step k, outputs from k on do not depend on STATE_IN or earlier steps."""
    torch.manual_seed(0)
    module = _module(VECTOR, gym.spaces.Discrete(3), core=core).eval()
    obs = torch.randn(B, T, 4)
    init = module.get_initial_state()
    # Noise in every state field; window masks claim all of it is valid.
    noisy = {
        k: torch.ones(B, *v.shape, dtype=bool) if v.dtype == np.bool_ else torch.randn(B, *v.shape)
        for k, v in init.items()
    }
    first = torch.zeros(B, T, dtype=torch.bool)
    first[:, 0] = True
    first[1, 3] = True  # an episode start inside the chunk

    def logits(state, observations):
        batch = {Columns.OBS: observations, Columns.STATE_IN: state, FIRST: first}
        with torch.no_grad():
            return module.forward_train(batch)[Columns.ACTION_DIST_INPUTS]

    zero = {k: torch.as_tensor(np.stack([v] * B)) for k, v in init.items()}
    torch.testing.assert_close(logits(noisy, obs), logits(zero, obs))
    changed = obs.clone()
    changed[1, :3] += 1.0  # steps of the earlier episode in row 1
    a, b = logits(zero, obs), logits(zero, changed)
    torch.testing.assert_close(a[1, 3:], b[1, 3:])
    assert not torch.allclose(a[1, :3], b[1, :3])
    # Without first, the state does matter (the test can fail).
    first[:] = False
    assert not torch.allclose(logits(noisy, obs), logits(zero, obs))


def test_separate_value_core_prefixes_state() -> None:
    module = _module(VECTOR, gym.spaces.Discrete(2), core="lstm", model={"shared_core": False})
    assert set(module.get_initial_state()) == {"pi/h", "pi/c", "vf/h", "vf/c"}
    out = module.forward_exploration(_batch(module))
    assert set(out[Columns.STATE_OUT]) == {"pi/h", "pi/c", "vf/h", "vf/c"}


def test_memoryless_module_is_stateless() -> None:
    module = _module(VECTOR, gym.spaces.Discrete(2), core="mlp", hidden_size=8)
    assert not module.is_stateful()
    out = module.forward_train(_batch(module, lead=(B,)))
    assert out[Columns.ACTION_DIST_INPUTS].shape == (B, 2)


def test_model_config_rejects_unknown_and_bad_keys() -> None:
    with pytest.raises(ValueError, match="unknown model key.*encoder_hiddens"):
        NetworkConfig.from_dict({"hiddens": [8]})
    with pytest.raises(ValueError, match="model.activation"):
        NetworkConfig.from_dict({"activation": "gelu"})
    assert NetworkConfig.from_dict({}) == NetworkConfig()


def _ppo(**overrides):
    kwargs = dict(
        env="memrl/TMaze-v0",
        env_config={},
        core="gru",
        core_kwargs={},
        model={},
        max_seq_len=8,
        training={},
        num_env_runners=0,
        num_envs_per_env_runner=1,
        num_learners=0,
        num_gpus_per_learner=0,
        seed=0,
    )
    return build_ppo_config(**{**kwargs, **overrides})


def test_build_ppo_config_validates() -> None:
    with pytest.raises(ValueError, match="core must be one of"):
        _ppo(core="transformer")
    with pytest.raises(ValueError, match="unknown or reserved training key.*'lr_typo'"):
        _ppo(training={"lr_typo": 1e-3})
    with pytest.raises(ValueError, match="reserved"):
        _ppo(training={"learner_class": object})
    with pytest.raises(ValueError, match="max_seq_len"):
        _ppo(max_seq_len=0)
    with pytest.raises(ValueError, match="unknown argument"):
        _ppo(core="gtrxl", core_kwargs={"memory": 4})


def test_build_ppo_config_sets_lookback_and_stack() -> None:
    config = _ppo(core="gtrxl", core_kwargs=SMALL_CORE_KWARGS["gtrxl"], training={"lr": 1e-4})
    assert config.enable_rl_module_and_learner and config.enable_env_runner_and_connector_v2
    assert config.episode_lookback_horizon == SMALL_CORE_KWARGS["gtrxl"]["memory_len"]
    assert config.lr == 1e-4
    assert config.rl_module_spec.module_class is MemoryActorCritic
    assert not config.add_default_connectors_to_env_to_module_pipeline


def _flags(module) -> set[bool]:
    return {m.training for m in module.modules()}


def test_acting_evaluates_in_eval_mode_and_restores_the_mode() -> None:
    module = _module(VECTOR, gym.spaces.Discrete(2), core="gru")
    module.train()
    seen = []
    module.pi_branch.core.register_forward_hook(lambda m, *_: seen.append(m.training))
    out = module.forward_exploration(_batch(module, lead=(B, 1)))
    assert seen == [False] and _flags(module) == {True}
    # Acting outputs carry no autograd graph.
    assert not out[Columns.ACTION_DIST_INPUTS].requires_grad
    module.eval()
    module.forward_inference(_batch(module, lead=(B, 1)))
    assert seen == [False, False] and _flags(module) == {False}
    # An env runner's copy (inference_only) starts in eval mode and stays there.
    runner = MemoryActorCritic(
        observation_space=VECTOR,
        action_space=gym.spaces.Discrete(2),
        inference_only=True,
        model_config={
            "core": "gru",
            "core_kwargs": {"hidden_size": 8},
            "model": {},
            "max_seq_len": T,
        },
    )
    assert _flags(runner) == {False}


def test_values_without_embeddings_are_targets_without_graph() -> None:
    module = _module(VECTOR, gym.spaces.Discrete(2), core="gru")
    batch = _batch(module)
    targets = module.compute_values(batch)
    assert not targets.requires_grad
    fwd = module.forward_train(batch)
    values = module.compute_values(batch, embeddings=fwd[Columns.EMBEDDINGS])
    assert values.requires_grad
    torch.testing.assert_close(values.detach(), targets)
