"""RLlib layer: RLModules around any memory core, compact-state connectors, PPO glue.

Importing this package imports Ray RLlib; memrl.models and memrl.envs stay Ray-free.
"""

from memrl.rllib.module import FIRST, MemoryActorCritic
from memrl.rllib.ppo import build_ppo_config

__all__ = ["FIRST", "MemoryActorCritic", "build_ppo_config"]
