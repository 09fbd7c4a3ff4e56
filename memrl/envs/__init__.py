"""Memory environments (layer 2: gymnasium envs and their registration, no RL logic).

``import memrl.envs`` registers every memrl id with gymnasium; ``make_env(env_id, **kwargs)``
builds one with the id and kwargs checked. See ``memrl.envs.registry.ENVS`` for the ids.
"""

from memrl.envs.registry import (
    ENVS,
    EnvEntry,
    env_kwargs,
    list_envs,
    make_env,
    register_all,
    resolve_env_id,
)

register_all()

__all__ = [
    "ENVS",
    "EnvEntry",
    "env_kwargs",
    "list_envs",
    "make_env",
    "register_all",
    "resolve_env_id",
]
