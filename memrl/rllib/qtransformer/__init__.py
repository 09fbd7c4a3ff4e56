"""Q-Transformer (Chebotar et al. 2023): offline Q-learning with per-dimension autoregressive
Q-values over discretised actions, on any memory core. Pure PyTorch; no Ray needed."""

from memrl.config import QTransformerHyperparameters
from memrl.rllib.qtransformer.algorithm import (
    QTransformerAlgorithm,
    QTransformerAlgorithmConfig,
    build_qtransformer_config,
    load_policy,
)
from memrl.rllib.qtransformer.discretise import ActionBins
from memrl.rllib.qtransformer.network import CausalDimensionHead, QTransformerNetwork
from memrl.rllib.qtransformer.policy import GreedyEpisode, play_greedy
from memrl.rllib.qtransformer.returns import mc_lower_bound, returns_to_go
from memrl.rllib.qtransformer.sequences import QTBatch, SequenceSampler
from memrl.rllib.qtransformer.targets import autoregressive_targets, qtransformer_loss
from memrl.rllib.qtransformer.update import QTransformerUpdate

__all__ = [
    "ActionBins",
    "CausalDimensionHead",
    "GreedyEpisode",
    "QTBatch",
    "QTransformerAlgorithm",
    "QTransformerAlgorithmConfig",
    "QTransformerHyperparameters",
    "QTransformerNetwork",
    "QTransformerUpdate",
    "SequenceSampler",
    "autoregressive_targets",
    "build_qtransformer_config",
    "load_policy",
    "mc_lower_bound",
    "play_greedy",
    "qtransformer_loss",
    "returns_to_go",
]
