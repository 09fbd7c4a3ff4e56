"""R2D2-style recurrent Q-learning (Kapturowski et al. 2019) with any memrl memory core.

``r2d2_config(...)`` / ``build_r2d2_config(train_cfg, resources)`` give an RLlib config whose
``build_algo()`` trains :class:`RecurrentQModule` with :class:`R2D2Learner` on memrl's sharded
sequence replay (see :mod:`memrl.rllib.offpolicy`).
"""

from memrl.rllib.r2d2.algorithm import (
    R2D2,
    R2D2Config,
    build_r2d2_config,
    r2d2_config,
)
from memrl.rllib.r2d2.learner import R2D2Learner, delta_q, r2d2_loss, unroll
from memrl.rllib.r2d2.module import QHead, RecurrentQModule
from memrl.rllib.r2d2.targets import (
    ape_x_epsilons,
    inverse_value_rescale,
    n_step_targets,
    value_rescale,
)

__all__ = [
    "R2D2",
    "QHead",
    "R2D2Config",
    "R2D2Learner",
    "RecurrentQModule",
    "ape_x_epsilons",
    "build_r2d2_config",
    "delta_q",
    "inverse_value_rescale",
    "n_step_targets",
    "r2d2_config",
    "r2d2_loss",
    "unroll",
    "value_rescale",
]
