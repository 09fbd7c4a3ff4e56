"""Recurrent TD3: targets, masks, delayed schedule, Polyak, burn-in, shared/separate cores,
action bounds, per-step state. Pure PyTorch (no Ray started)."""

from __future__ import annotations

import copy

import gymnasium as gym
import numpy as np
import pytest
import torch
from core_kwargs import SMALL_CORE_KWARGS

from memrl.config import TD3Hyperparameters
from memrl.rllib.td3 import TD3Networks, TD3Update
from memrl.rllib.td3.losses import (
    bootstrap_targets,
    gaussian_exploration,
    masked_mean,
    next_step,
    polyak_update,
    smoothed_target_action,
    td_step_mask,
)
from memrl.rllib.td3.networks import PREV_ACTION

OBS = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
ACT = gym.spaces.Box(np.array([-2.0, 0.0], np.float32), np.array([2.0, 1.0], np.float32))
NETWORK = {"encoder_hiddens": [16], "head_hiddens": [16]}


def make_nets(core: str = "gru", shared: bool = False, seed: int = 0) -> TD3Networks:
    torch.manual_seed(seed)
    kwargs = SMALL_CORE_KWARGS[core]
    return TD3Networks(OBS, ACT, core, kwargs, NETWORK, shared_core=shared)


def make_batch(nets: TD3Networks, batch: int = 3, length: int = 9, burn_in: int = 3, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    unit = torch.rand(batch, length, 2, generator=g) * 2 - 1
    state = nets.initial_state(batch)
    for key, value in state.items():
        if value.dtype.is_floating_point:
            state[key] = torch.randn(value.shape, generator=g) * 0.1
    state[PREV_ACTION] = nets.scale.env(torch.rand(batch, 2, generator=g) * 2 - 1)
    return {
        "obs": torch.rand(batch, length, 3, generator=g) * 2 - 1,
        "action": nets.scale.env(unit),
        "reward": torch.randn(batch, length, generator=g),
        "terminated": torch.zeros(batch, length, dtype=torch.bool),
        "truncated": torch.zeros(batch, length, dtype=torch.bool),
        "first": torch.zeros(batch, length, dtype=torch.bool),
        "mask": torch.ones(batch, length, dtype=torch.bool),
        "weights": torch.ones(batch),
        "state": state,
        "burn_in": burn_in,
    }


def params_of(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def changed(before: list[torch.Tensor], module: torch.nn.Module) -> bool:
    return any(not torch.equal(b, p) for b, p in zip(before, module.parameters(), strict=True))


# --- target computation ---------------------------------------------------------------------
def test_smoothing_noise_is_clipped_then_action_clipped_to_bounds():
    low, high = torch.tensor([-1.0, -2.0]), torch.tensor([1.0, 2.0])  # half ranges 1 and 2
    action = torch.tensor([[0.0, 0.0], [0.9, -1.5], [0.2, 1.0]])
    eps = torch.tensor([[0.3, 0.3], [0.7, -0.9], [-0.1, 0.45]])
    out = smoothed_target_action(action, low, high, noise=0.2, noise_clip=0.5, eps=eps)
    # row 0: +0.3 * (1, 2); row 1: eps clipped to (0.5, -0.5) -> (1.4, -2.5) -> bounds (1, -2);
    # row 2: (-0.1, 0.45) * (1, 2) -> (0.1, 1.9)
    expected = torch.tensor([[0.3, 0.6], [1.0, -2.0], [0.1, 1.9]])
    torch.testing.assert_close(out, expected)


def test_drawn_smoothing_noise_stays_within_the_clip():
    low, high = -torch.ones(1) * 10, torch.ones(1) * 10  # wide bounds: only the noise clip acts
    action = torch.zeros(20000, 1)
    out = smoothed_target_action(
        action, low, high, noise=1.0, noise_clip=0.5, generator=torch.Generator().manual_seed(0)
    )
    assert out.abs().max() <= 0.5 * 10 + 1e-6  # clip 0.5 half ranges (half range 10)
    assert (out.abs() >= 5.0 - 1e-6).float().mean() > 0.5  # N(0, 1) is clipped at 0.5 often
    # std 0.2 half ranges: about 0.2 * 10
    small = smoothed_target_action(
        action, low, high, noise=0.2, noise_clip=10.0, generator=torch.Generator().manual_seed(1)
    )
    assert abs(float(small.std()) - 2.0) < 0.1


def test_bootstrap_takes_min_of_twins_and_cuts_only_on_termination():
    reward = torch.tensor([[1.0, 2.0, 3.0]])
    terminated = torch.tensor([[False, True, False]])
    q1 = torch.tensor([[10.0, 10.0, 4.0]])
    q2 = torch.tensor([[5.0, 20.0, 8.0]])
    y = bootstrap_targets(reward, terminated, q1, q2, gamma=0.5)
    torch.testing.assert_close(y, torch.tensor([[1.0 + 0.5 * 5.0, 2.0, 3.0 + 0.5 * 4.0]]))


def test_td_step_mask_terminated_truncated_padding():
    # seq 0: episode terminates at step 2, padding after.
    # seq 1: episode truncated at step 1 (final observation not stored), padding after.
    # seq 2: all real, no end: the last step has no successor in the sequence.
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]], dtype=torch.bool)
    terminated = torch.tensor([[0, 0, 1, 0], [0, 0, 0, 0], [0, 0, 0, 0]], dtype=torch.bool)
    out = td_step_mask(mask, terminated)
    expected = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 1, 0]], dtype=torch.bool)
    assert torch.equal(out, expected)
    # A truncated step whose final observation *is* stored next is bootstrapped like any other.
    assert td_step_mask(torch.ones(1, 3, dtype=torch.bool), torch.zeros(1, 3, dtype=torch.bool))[
        0, 1
    ]


def test_masked_mean_weights_sequences_and_ignores_masked_steps():
    values = torch.tensor([[1.0, 100.0], [3.0, 5.0]])
    mask = torch.tensor([[True, False], [True, True]])
    out = masked_mean(values, mask, torch.tensor([2.0, 1.0]))
    torch.testing.assert_close(out, torch.tensor((2 * 1.0 + 3.0 + 5.0) / 3))


@pytest.mark.parametrize("shared", [False, True])
def test_update_targets_match_hand_computation(shared):
    nets = make_nets("gru", shared)
    hp = TD3Hyperparameters(target_noise=0.0, gamma=0.9, shared_core=shared)
    update = TD3Update(nets, hp, seed=0)
    # Make the target differ from the online networks, so that the test sees which one is used.
    with torch.no_grad():
        for p in update.target.parameters():
            p.add_(0.05 * torch.randn_like(p))
    t = make_batch(nets, burn_in=3)
    t["terminated"][0, 5] = True
    t["mask"][0, 6:] = False
    t["truncated"][1, 7] = True
    t["mask"][1, 8:] = False
    y = update.targets(t)
    # By hand: the target networks unrolled over the whole sequence, one step at a time.
    target = update.target
    state = dict(t["state"])
    q_min = []
    with torch.no_grad():
        for step in range(t["obs"].shape[1]):
            actor, critic, state = target.histories(
                t["obs"][:, step : step + 1],
                None,
                {
                    **state,
                    PREV_ACTION: t["state"][PREV_ACTION] if step == 0 else t["action"][:, step - 1],
                },
                t["first"][:, step : step + 1],
            )
            a = target.actor(actor)  # no smoothing noise (target_noise 0)
            q1, q2 = target.q_values(critic, a)
            q_min.append(torch.minimum(q1, q2)[:, 0])
    q_min = torch.stack(q_min, dim=1)
    expected = t["reward"] + 0.9 * (~t["terminated"]).float() * next_step(q_min)
    torch.testing.assert_close(y, expected[:, 3:], atol=1e-5, rtol=1e-4)
    assert y[0, 5 - 3] == t["reward"][0, 5]  # terminated: reward only


def test_update_ignores_steps_without_target_and_reports_td_mask():
    nets = make_nets("gru")
    update = TD3Update(nets, TD3Hyperparameters(), seed=0)
    t = make_batch(nets, burn_in=2, length=6)
    t["mask"][0, 4:] = False  # truncated at step 3 (final obs not stored)
    t["truncated"][0, 3] = True
    out = update.update(t)
    assert out.td_abs.shape == out.td_mask.shape == (3, 4)
    np.testing.assert_array_equal(out.td_mask[0], [True, False, False, False])
    np.testing.assert_array_equal(out.td_mask[1], [True, True, True, False])
    # The loss of a step without target has no effect: changing its reward changes nothing.
    for seq, step in ((0, 3), (0, 4), (1, 5)):
        nets_a, nets_b = make_nets("gru", seed=3), make_nets("gru", seed=3)
        ta, tb = make_batch(nets_a, burn_in=2, length=6), make_batch(nets_b, burn_in=2, length=6)
        for t_ in (ta, tb):
            t_["mask"][0, 4:] = False
            t_["truncated"][0, 3] = True
        tb["reward"][seq, step] += 100.0
        ua, ub = (
            TD3Update(nets_a, TD3Hyperparameters(), seed=0),
            TD3Update(nets_b, TD3Hyperparameters(), seed=0),
        )
        ua.update(ta)
        ub.update(tb)
        for pa, pb in zip(nets_a.parameters(), nets_b.parameters(), strict=True):
            torch.testing.assert_close(pa, pb)


# --- schedule and Polyak --------------------------------------------------------------------
def test_actor_and_targets_change_only_every_policy_delay_steps():
    nets = make_nets("gru")
    update = TD3Update(nets, TD3Hyperparameters(policy_delay=3, tau=0.5), seed=0)
    t = make_batch(nets)
    actor_updated = []
    for step in range(1, 7):
        actor_before = [p.detach().clone() for p in nets.actor_parameters()]
        critic_before = [p.detach().clone() for p in nets.critic_parameters()]
        target_before = params_of(update.target)
        out = update.update(t)
        actor_moved = any(
            not torch.equal(b, p)
            for b, p in zip(actor_before, nets.actor_parameters(), strict=True)
        )
        critic_moved = any(
            not torch.equal(b, p)
            for b, p in zip(critic_before, nets.critic_parameters(), strict=True)
        )
        assert critic_moved, f"critic must change at every step (step {step})"
        assert actor_moved == (step % 3 == 0), f"actor at step {step}"
        assert changed(target_before, update.target) == (step % 3 == 0), f"target at step {step}"
        actor_updated.append(out.metrics["actor_updated"])
    assert actor_updated == [0, 0, 1, 0, 0, 1]
    assert update.actor_updates == 2 and update.critic_updates == 6


def test_polyak_update_is_exact():
    online, target = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    before = params_of(target)
    polyak_update(target, online, tau=0.25)
    for b, o, t in zip(before, online.parameters(), target.parameters(), strict=True):
        torch.testing.assert_close(t, 0.75 * b + 0.25 * o)


def test_update_polyak_moves_targets_by_tau():
    nets = make_nets("gru")
    update = TD3Update(nets, TD3Hyperparameters(policy_delay=1, tau=0.1), seed=0)
    target_before = params_of(update.target)
    update.update(make_batch(nets))
    for b, o, t in zip(target_before, nets.parameters(), update.target.parameters(), strict=True):
        torch.testing.assert_close(t, 0.9 * b + 0.1 * o)


# --- burn-in, shared and separate cores -------------------------------------------------------
@pytest.mark.parametrize("core", ["gru", "gtrxl"])
def test_burn_in_gets_no_gradient(core):
    nets = make_nets(core)
    update = TD3Update(nets, TD3Hyperparameters(), seed=0)
    t = make_batch(nets, burn_in=4, length=9)
    t["obs"].requires_grad_(True)
    actor, critic = update._online_features(t)
    q1, q2 = nets.q_values(critic, t["action"][:, 4:])
    (q1.sum() + q2.sum() + nets.actor(actor).sum()).backward()
    grad = t["obs"].grad
    assert torch.all(grad[:, :4] == 0), "no gradient may reach the burn-in steps"
    assert torch.all(grad[:, 4:].abs().sum(dim=-1) > 0)


@pytest.mark.parametrize("shared", [False, True])
def test_which_parameters_each_loss_trains(shared):
    nets = make_nets("gru", shared)
    actor_ids = {id(p) for p in nets.actor_parameters()}
    critic_ids = {id(p) for p in nets.critic_parameters()}
    assert not actor_ids & critic_ids
    assert actor_ids | critic_ids == {id(p) for p in nets.parameters()}
    history_ids = {id(p) for p in nets.actor_history.parameters()}
    assert history_ids <= (critic_ids if shared else actor_ids)

    # Actor-only step (critic lr 0): the critic (and a shared history) must not move.
    t = make_batch(nets)
    update = TD3Update(
        nets, TD3Hyperparameters(policy_delay=1, critic_lr=1e-12, shared_core=shared), seed=0
    )
    update.critic_optimizer.param_groups[0]["lr"] = 0.0
    actor_history = params_of(nets.actor_history)
    heads = params_of(nets.actor_head)
    q_heads = params_of(nets.q_heads)
    update.update(t)
    assert changed(heads, nets.actor_head)
    assert not changed(q_heads, nets.q_heads)
    assert changed(actor_history, nets.actor_history) == (not shared)

    # Critic-only step (actor lr 0): the actor head (and a separate actor history) stay.
    nets2 = make_nets("gru", shared, seed=5)
    update2 = TD3Update(nets2, TD3Hyperparameters(policy_delay=1, shared_core=shared), seed=0)
    update2.actor_optimizer.param_groups[0]["lr"] = 0.0
    actor_history, heads = params_of(nets2.actor_history), params_of(nets2.actor_head)
    critic_history, q_heads = params_of(nets2.critic_history), params_of(nets2.q_heads)
    update2.update(make_batch(nets2))
    assert not changed(heads, nets2.actor_head)
    assert changed(q_heads, nets2.q_heads) and changed(critic_history, nets2.critic_history)
    assert changed(actor_history, nets2.actor_history) == shared


def test_shared_core_actor_loss_sends_no_gradient_into_the_core():
    nets = make_nets("gru", shared=True)
    t = make_batch(nets)
    actor, critic, _ = nets.histories(t["obs"], t["action"], t["state"], t["first"])
    q1, _ = nets.q_values(critic.detach(), nets.actor(actor))
    (-q1.mean()).backward()
    assert all(p.grad is None for p in nets.critic_history.parameters())
    assert all(p.grad is not None for p in nets.actor_head.parameters())


# --- acting: bounds and per-step state ------------------------------------------------------
def test_actions_stay_within_bounds():
    nets = make_nets("gru")
    low, high = nets.scale.low, nets.scale.high
    with torch.no_grad():
        for p in nets.actor_head.parameters():
            p.mul_(1000.0)  # saturate the tanh
        obs = torch.randn(64, 1, 3) * 10
        actor, _, _ = nets.histories(
            obs, None, nets.initial_state(64), torch.ones(64, 1, dtype=torch.bool)
        )
        action = nets.actor(actor)
        explored = gaussian_exploration(
            action, low, high, noise=5.0, generator=torch.Generator().manual_seed(0)
        )
    for a in (action, explored):
        assert torch.all(a >= low) and torch.all(a <= high)
    assert torch.any(explored == low) and torch.any(explored == high)


def test_gaussian_exploration_scale_is_noise_times_half_range():
    low, high = torch.tensor([-2.0]), torch.tensor([2.0])
    out = gaussian_exploration(
        torch.zeros(20000, 1), low, high, noise=0.1, generator=torch.Generator().manual_seed(0)
    )
    assert abs(float(out.std()) - 0.2) < 0.01


@pytest.mark.parametrize("core", ["gru", "lstm", "gtrxl", "relit"])
@pytest.mark.parametrize("shared", [False, True])
def test_stepwise_acting_equals_sequence_unroll(core, shared):
    """Carrying ``prev_action`` in the state makes acting one step at a time equal the replayed
    sequence unroll, episode starts included."""
    nets = make_nets(core, shared)
    t = make_batch(nets, batch=2, length=7, burn_in=0)
    t["first"][:, 0] = True
    t["first"][1, 4] = True
    state = nets.initial_state(2)
    with torch.no_grad():
        seq_actor, seq_critic, _ = nets.histories(t["obs"], t["action"], state, t["first"])
        for step in range(7):
            prev = torch.zeros(2, 2) if step == 0 else t["action"][:, step - 1]
            actor, critic, state = nets.histories(
                t["obs"][:, step : step + 1],
                None,
                {**state, PREV_ACTION: prev},
                t["first"][:, step : step + 1],
            )
            torch.testing.assert_close(actor[:, 0], seq_actor[:, step], atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(critic[:, 0], seq_critic[:, step], atol=1e-5, rtol=1e-4)


def test_state_spec_keys():
    separate = make_nets("gru").state_spec()
    assert set(separate) == {"actor/h", "critic/h", PREV_ACTION}
    assert separate[PREV_ACTION].shape == (2,)
    assert set(make_nets("gru", shared=True).state_spec()) == {"h", PREV_ACTION}
    assert make_nets("mlp").state_spec() == {}


def test_memoryless_update_runs():
    nets = make_nets("mlp")
    update = TD3Update(nets, TD3Hyperparameters(policy_delay=1), seed=0)
    t = make_batch(nets)
    t["state"] = {}
    out = update.update(t)
    assert np.isfinite(out.metrics["critic_loss"]) and out.metrics["actor_updated"] == 1.0


# --- validation -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"tau": 0.0}, "tau"),
        ({"policy_delay": 0}, "policy_delay"),
        ({"gamma": 1.5}, "gamma"),
        ({"grad_clip": -1.0}, "grad_clip"),
        ({"actor_lr": 0}, "actor_lr"),
    ],
)
def test_bad_hyperparameters_name_the_field(kwargs, field):
    # pydantic's message names the section and the field: "... for TD3Hyperparameters\n<field>".
    with pytest.raises(ValueError, match=rf"TD3Hyperparameters\n{field}\b"):
        TD3Hyperparameters(**kwargs)


def test_unknown_td3_key_lists_valid_ones():
    with pytest.raises(ValueError, match="policy_delay"):
        TD3Hyperparameters.from_dict({"polcy_delay": 2})


def test_bad_spaces_and_network():
    with pytest.raises(ValueError, match="Box action space"):
        TD3Networks(OBS, gym.spaces.Discrete(3), "gru", {}, NETWORK)
    with pytest.raises(ValueError, match="finite action bounds"):
        TD3Networks(OBS, gym.spaces.Box(-np.inf, np.inf, (1,)), "gru", {}, NETWORK)
    with pytest.raises(ValueError, match="head_hiddens"):
        TD3Networks(OBS, ACT, "gru", {}, {"head_hiddens": []})
    with pytest.raises(ValueError, match="td3.shared_core"):
        TD3Networks(OBS, ACT, "gru", {}, {**NETWORK, "shared_core": True})
    with pytest.raises(ValueError, match="core must be one of"):
        TD3Networks(OBS, ACT, "rnn", {}, NETWORK)


def test_update_state_dict_round_trip():
    nets = make_nets("gru")
    update = TD3Update(nets, TD3Hyperparameters(policy_delay=1), seed=0)
    update.update(make_batch(nets))
    saved = copy.deepcopy(update.state_dict())
    other = TD3Update(make_nets("gru", seed=9), TD3Hyperparameters(policy_delay=1), seed=0)
    other.load_state_dict(saved)
    for a, b in zip(update.target.parameters(), other.target.parameters(), strict=True):
        torch.testing.assert_close(a, b)
    assert other.critic_updates == 1 and other.actor_updates == 1
