"""Q-Transformer end to end through the commands: data collect -> train -> resume -> eval."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from memrl.cli import main
from memrl.progress import read_metrics

CONFIG = "configs/qtransformer/pointgoal_gru.yaml"
TINY = [
    "qtransformer.bins=8", "qtransformer.batch_size=4", "qtransformer.seq_len=8",
    "qtransformer.burn_in=4", "qtransformer.head_hiddens=[16]",
    "qtransformer.bin_embedding_dim=8", "qtransformer.updates_per_iteration=3",
    "qtransformer.eval_every=1", "qtransformer.eval_episodes=2",
    "model.core_kwargs.hidden_size=16", "model.network.encoder_hiddens=[16]",
    "checkpoint.every=1",
]  # fmt: skip


def _online(checkpoint: Path) -> dict[str, torch.Tensor]:
    state = torch.load(checkpoint / "algorithm" / "learner.pt", weights_only=True)
    return {**state["online"], **{f"target.{k}": v for k, v in state["target"].items()}}


@pytest.mark.slow
def test_collect_train_resume_eval(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    torch.set_num_threads(1)
    root = Path(__file__).resolve().parents[1]
    data = tmp_path / "ds"
    assert main(["data", "collect", "memrl/PointGoalMemory-v0", "--episodes", "5",
                 "--out", str(data)]) == 0  # fmt: skip
    common = [str(root / CONFIG), f"data.path={data}", *TINY]
    # one straight run of 3 iterations, and one of 2 resumed to 3
    assert main(["train", *common, "name=straight", f"output_dir={tmp_path}",
                 "stop.iterations=3"]) == 0  # fmt: skip
    assert main(["train", *common, "name=resumed", f"output_dir={tmp_path}",
                 "stop.iterations=2"]) == 0  # fmt: skip
    ckpt = tmp_path / "checkpoints" / "resumed" / "iter_000002"
    assert main(["train", "--resume", str(ckpt), "stop.iterations=3"]) == 0
    straight = _online(tmp_path / "checkpoints" / "straight" / "iter_000003")
    resumed = _online(tmp_path / "checkpoints" / "resumed" / "iter_000003")
    assert straight.keys() == resumed.keys()
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
    # the loop's logs: one line per iteration (appended on resume), steps = dataset steps
    history = read_metrics(tmp_path / "runs" / "resumed")
    assert [h["iteration"] for h in history] == [1, 2, 3]
    assert [h["env_steps"] for h in history] == [3 * 4 * 13 * i for i in (1, 2, 3)]
    assert all(h["q_loss"] is not None and h["episode_return_mean"] is not None for h in history)
    assert list((tmp_path / "runs" / "resumed").glob("events.out.tfevents.*"))
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "checkpoints" / "resumed"), "--episodes", "3",
                 "--json"]) == 0  # fmt: skip
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["algo"] == "qtransformer" and report["episodes"] == 3
    assert report["checkpoint"].endswith("iter_000003")
    assert 0.0 <= report["return_mean"] <= 50.0 and report["length_mean"] == 50.0
    assert "argmax Q per action dimension" in report["policy"]
    assert main(["eval", str(ckpt), "--episodes", "1", "--explore"]) == 2
