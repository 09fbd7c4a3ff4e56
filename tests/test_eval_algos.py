"""``memrl eval`` of R2D2 and TD3 checkpoints, and ``--video``, on policies with a known answer.

Each checkpoint is a freshly built algorithm whose last layer is set by hand (tests/crafted.py), so
that the greedy / deterministic policy takes one known action whatever it sees:

- R2D2 on T-Maze, argmax Q = RIGHT: the agent never takes an arm, every episode is cut off
  after ``max_steps`` steps of -0.1: success 0, return exactly ``-0.1 * max_steps``.
- TD3 on Pendulum, actor = ``2 tanh(0.5)`` at every step; Pendulum's rewards are <= 0, so with
  ``evaluation.success_threshold`` 0 no episode succeeds and with -1e9 every one does.

PPO's eval on a trained checkpoint is in test_evaluate.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from memrl import checkpoints
from memrl.config import load_config
from memrl.evaluate import evaluate, main
from tests.crafted import (
    MAX_STEPS,
    R2D2,
    RIGHT,
    TD3,
    TD3_ACTION,
    always_right,
    constant_torque,
    save_crafted,
)


@pytest.fixture(scope="module")
def r2d2_ckpt(ray_local, tmp_path_factory) -> Path:
    return save_crafted("r2d2/tmaze_gru", R2D2, tmp_path_factory.mktemp("r2d2"), always_right)


@pytest.fixture(scope="module")
def td3_ckpt(ray_local, tmp_path_factory) -> Path:
    return save_crafted("td3/pendulum_p_gru", TD3, tmp_path_factory.mktemp("td3"), constant_torque)


def test_r2d2_greedy_eval_reports_the_known_answer(r2d2_ckpt, capsys):
    assert main([str(r2d2_ckpt), "--episodes", "5", "--json"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["algo"] == "r2d2" and report["policy"] == "greedy (argmax Q)"
    assert report["episodes"] == 5
    assert report["success_rate"] == 0.0
    assert report["success_ci95"][0] == 0.0 and 0.4 < report["success_ci95"][1] < 0.45
    assert report["return_mean"] == pytest.approx(-0.1 * MAX_STEPS)
    assert report["return_ci95"] == pytest.approx([-0.1 * MAX_STEPS] * 2)
    assert report["length_mean"] == MAX_STEPS


def test_r2d2_explore_is_epsilon_greedy_and_greedy_is_not(r2d2_ckpt):
    from memrl.eval_policies import play

    cfg = load_config(r2d2_ckpt / checkpoints.CONFIG_FILE)
    greedy = play(cfg, r2d2_ckpt / checkpoints.ALGORITHM_DIR, 3, explore=False)
    assert {int(a) for ep in greedy.actions for a in ep} == {RIGHT}
    sampled = play(cfg, r2d2_ckpt / checkpoints.ALGORITHM_DIR, 3, explore=True)
    actions = [int(a) for ep in sampled.actions for a in ep]
    # epsilon 0.4 of one actor: some of ~18 actions are random (all RIGHT: p < 1e-3)
    assert any(a != RIGHT for a in actions), actions


def test_td3_deterministic_eval_reports_the_known_answer(td3_ckpt, capsys):
    from memrl.eval_policies import play

    assert main([str(td3_ckpt), "--episodes", "2", "--json"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["algo"] == "td3" and report["policy"] == "deterministic actor"
    assert report["success_rate"] == 0.0 and report["length_mean"] == 200
    assert report["return_mean"] < 0

    cfg = load_config(td3_ckpt / checkpoints.CONFIG_FILE)
    played = play(cfg, td3_ckpt / checkpoints.ALGORITHM_DIR, 1, explore=False)
    actions = np.concatenate([np.asarray(ep, np.float64).reshape(-1) for ep in played.actions])
    np.testing.assert_allclose(actions, TD3_ACTION, rtol=1e-5)
    noisy = play(cfg, td3_ckpt / checkpoints.ALGORITHM_DIR, 1, explore=True)
    noisy_actions = np.asarray(noisy.actions[0], dtype=np.float64).reshape(-1)
    assert np.std(noisy_actions) > 0.01  # Gaussian exploration noise 0.1


def test_td3_success_threshold_below_every_return_counts_every_episode(td3_ckpt, tmp_path):
    # The same weights under another success rule: a copy of the checkpoint with a new config
    # (and so a new manifest) must be saved through checkpoints.save, not edited by hand.
    data = checkpoints.load_config_data(td3_ckpt)
    data["evaluation"]["success_threshold"] = -1e9
    report = evaluate(_resaved(td3_ckpt, data, tmp_path), episodes=2)
    assert report.success_rate == 1.0 and report.episodes == 2


def _resaved(ckpt: Path, config: dict, out: Path) -> Path:
    import shutil

    class Copy:
        def save_to_path(self, path: str) -> str:
            shutil.copytree(ckpt / checkpoints.ALGORITHM_DIR, path)
            return path

    state = checkpoints.load_state(ckpt)
    return checkpoints.save(Copy(), out / "resaved", config, state, keep=1)


def test_video_gif_has_one_frame_per_step_plus_each_reset(r2d2_ckpt, tmp_path, capsys):
    from PIL import Image

    out = tmp_path / "tmaze.gif"
    code = main([str(r2d2_ckpt), "--episodes", "3", "--video", str(out), "--video-episodes", "2"])
    assert code == 0, capsys.readouterr()
    assert f"video: {out}" in capsys.readouterr().out
    with Image.open(out) as gif:
        assert gif.n_frames == 2 * (MAX_STEPS + 1)
        assert gif.width >= 256 and gif.width % 16 == 0 and gif.height % 16 == 0


def test_video_mp4_has_the_same_frames(r2d2_ckpt, tmp_path):
    imageio = pytest.importorskip("imageio.v2")
    pytest.importorskip("imageio_ffmpeg")
    out = tmp_path / "tmaze.mp4"
    evaluate(r2d2_ckpt, episodes=1, video=out, video_episodes=1)
    with imageio.get_reader(out) as reader:
        assert reader.count_frames() == MAX_STEPS + 1


@pytest.mark.parametrize(
    ("video", "message"),
    [("out.avi", "must end in .gif or .mp4"), ("missing/out.gif", "does not exist")],
)
def test_video_errors_are_one_line(r2d2_ckpt, tmp_path, video, message, capsys):
    assert main([str(r2d2_ckpt), "--video", str(tmp_path / video)]) == 2
    text = capsys.readouterr().out.strip()
    assert message in text and "Traceback" not in text


def test_video_of_an_env_that_cannot_render_images_is_one_line(td3_ckpt, tmp_path, capsys):
    assert main([str(td3_ckpt), "--video", str(tmp_path / "p.gif")]) == 2
    text = capsys.readouterr().out.strip()
    assert "cannot render rgb_array" in text or "renders no rgb_array" in text, text
