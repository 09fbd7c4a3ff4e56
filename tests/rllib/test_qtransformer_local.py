"""The in-process offline loop end to end: dataset on disk -> updates -> greedy evaluation."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from memrl.data.collect import collect
from memrl.rllib.model_config import ModelConfig
from memrl.rllib.qtransformer import QTransformerHyperparameters
from memrl.rllib.qtransformer.local import train_offline


def test_train_offline_on_a_collected_dataset(tmp_path: Path) -> None:
    collect("memrl/PointGoalMemory-v0", str(tmp_path / "ds"), 4, seed=0)
    hp = QTransformerHyperparameters(
        bins=16, batch_size=4, seq_len=8, burn_in=4, n_step=2, head_hiddens=(32,)
    )
    network, update, result = train_offline(
        tmp_path / "ds", core="gru", core_kwargs={"hidden_size": 16, "num_layers": 1},
        model=ModelConfig.from_dict({"encoder_hiddens": [16]}), hp=hp, updates=6,
        eval_every=3, eval_episodes=1,
    )  # fmt: skip
    assert update.updates == result.updates == 6
    assert [u for u, _ in result.evaluations] == [3, 6]
    assert all(0.0 <= r <= 50.0 for _, r in result.evaluations)
    assert np.isfinite(result.metrics["loss"]) and result.timesteps_per_s > 0
