"""PPO learner whose connector rebuilds memrl's compact state (the loss is RLlib's own)."""

from __future__ import annotations

from ray.rllib.algorithms.ppo.torch.ppo_torch_learner import PPOTorchLearner

from memrl.rllib.connectors import MemoryStateToTrainBatch

# Name (not class) so that both the common and the learner re-export match.
_RLLIB_STATE_PIECE = "AddStatesFromEpisodesToBatch"


def insert_state_connector(pipeline) -> None:
    """Put ``MemoryStateToTrainBatch`` right before RLlib's ``AddStatesFromEpisodesToBatch``.

    Raises RuntimeError if the pipeline lacks that piece (default learner connectors disabled):
    RLlib's ``insert_before`` would silently insert before the last piece instead.
    """
    names = [type(c).__name__ for c in pipeline.connectors]
    if _RLLIB_STATE_PIECE not in names:
        raise RuntimeError(
            f"learner connector pipeline has no {_RLLIB_STATE_PIECE} ({names}); memrl needs "
            "RLlib's default learner connectors"
        )
    pipeline.insert_before(_RLLIB_STATE_PIECE, MemoryStateToTrainBatch())


class MemoryPPOTorchLearner(PPOTorchLearner):
    """``PPOTorchLearner`` plus the compact-state learner connector."""

    def build(self) -> None:
        super().build()
        if self._learner_connector is not None:
            insert_state_connector(self._learner_connector)
