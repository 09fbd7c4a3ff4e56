"""Q-Transformer (Chebotar et al. 2023): offline Q-learning with per-dimension autoregressive
Q-values over discretised actions, on any memory core. Pure PyTorch; no Ray needed."""

from memrl.rllib.qtransformer.discretise import ActionBins
from memrl.rllib.qtransformer.hyperparameters import QTransformerHyperparameters
from memrl.rllib.qtransformer.network import CausalDimensionHead, QTransformerNetwork
from memrl.rllib.qtransformer.returns import mc_lower_bound, returns_to_go
from memrl.rllib.qtransformer.sequences import QTBatch, SequenceSampler
from memrl.rllib.qtransformer.targets import autoregressive_targets, qtransformer_loss
from memrl.rllib.qtransformer.update import QTransformerUpdate

__all__ = [
    "ActionBins",
    "CausalDimensionHead",
    "QTBatch",
    "QTransformerHyperparameters",
    "QTransformerNetwork",
    "QTransformerUpdate",
    "SequenceSampler",
    "autoregressive_targets",
    "mc_lower_bound",
    "qtransformer_loss",
    "returns_to_go",
]
