"""Connectors that keep memrl's compact per-step state (see :mod:`memrl.rllib.state`).

Env runner, per step::

    env-to-module:  [AddObservationsFromEpisodesToBatch, AddTimeDimToBatchAndZeroPad,
                     MemoryStateToModule, BatchIndividualItems, NumpyToTensor]
    module-to-env:  [RLlib's defaults..., MemoryStateFromModule, ...]

``MemoryStateFromModule`` takes the module's full ``STATE_OUT`` per episode, keeps it in the env
runner's ``shared_data`` (the next step's ``STATE_IN``) and leaves only the step's *record* under
``STATE_OUT``, which is what the env runner writes into the episode. ``MemoryStateToModule``
feeds the kept state back (the initial state at an episode's first step) plus the ``first`` flag.

Learner: ``MemoryStateToTrainBatch`` sits before RLlib's ``AddStatesFromEpisodesToBatch`` (which
then returns early, as ``STATE_IN`` is present) and rebuilds the state at the start of every
``max_seq_len`` chunk from the episode's records, reaching into the episode's lookback buffer for
chunks that start where a previous sample batch ended.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import tree
from ray.rllib.connectors.common import (
    AddObservationsFromEpisodesToBatch,
    AddTimeDimToBatchAndZeroPad,
    BatchIndividualItems,
    NumpyToTensor,
)
from ray.rllib.connectors.connector_v2 import ConnectorV2
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.multi_rl_module import MultiRLModule
from ray.rllib.env.single_agent_episode import SingleAgentEpisode

from memrl.rllib.module import FIRST
from memrl.rllib.state import states_before, step_record

log = logging.getLogger(__name__)

# shared_data key of the env runner: {episode id: full state after its last step}.
_STATES = "memrl_states"


def _single_module(rl_module: Any) -> Any:
    if isinstance(rl_module, MultiRLModule):
        return rl_module[DEFAULT_MODULE_ID]
    return rl_module


def episode_records(episode: SingleAgentEpisode) -> tuple[dict[str, np.ndarray], int]:
    """The episode's stored records ``{field: [R, ...]}`` (lookback rows first) and the number of
    lookback rows. ``({}, 0)`` if the episode stores none."""
    buffer = episode.extra_model_outputs.get(Columns.STATE_OUT)
    if buffer is None:
        return {}, 0
    if buffer.finalized:
        return dict(buffer.data), buffer.lookback
    if not buffer.data:
        return {}, 0
    return tree.map_structure(lambda *xs: np.stack(xs), *buffer.data), buffer.lookback


def rebuild_from_episode(
    module: Any, episode: SingleAgentEpisode, local_starts: np.ndarray
) -> dict[str, np.ndarray]:
    """States ``{key: [C, ...]}`` before the episode chunk's steps ``local_starts`` (0 = the
    chunk's first step), rebuilt from the records the episode holds."""
    records, lookback = episode_records(episode)
    return states_before(
        records,
        module.state_spec(),
        module.get_initial_state(),
        starts=lookback + np.asarray(local_starts, dtype=np.int64),
        first_row=lookback - episode.t_started,
    )


class MemoryStateToModule(ConnectorV2):
    """Env-to-module: ``STATE_IN`` (kept full state; initial at an episode start) and ``first``
    ``[1]`` per episode. Place after ``AddTimeDimToBatchAndZeroPad``."""

    def __call__(
        self,
        *,
        rl_module: Any,
        batch: dict[str, Any],
        episodes: list,
        explore: bool | None = None,
        shared_data: dict | None = None,
        **kwargs: Any,
    ) -> Any:
        module = _single_module(rl_module)
        if module is None or not module.is_stateful() or Columns.STATE_IN in batch:
            return batch
        kept = shared_data.setdefault(_STATES, {})
        initial = None
        running = set()
        for episode in self.single_agent_episode_iterator(episodes, agents_that_stepped_only=True):
            running.add(episode.id_)
            if episode.t == 0:
                if initial is None:
                    initial = module.get_initial_state()
                state = initial
            elif episode.id_ in kept:
                state = kept[episode.id_]
            else:
                # The module did not run on this episode's last step here (e.g. a restored env
                # runner): rebuild from the records, exactly as the learner does.
                log.debug("rebuilding the state of episode %s from its records", episode.id_)
                rebuilt = rebuild_from_episode(module, episode, np.array([len(episode)]))
                state = {k: v[0] for k, v in rebuilt.items()}
            if hasattr(module, "acting_state"):
                state = module.acting_state(state)  # a K/V cache beside the window, if any
            self.add_batch_item(batch, Columns.STATE_IN, state, episode)
            self.add_batch_item(batch, FIRST, np.array([episode.t == 0]), episode)
        for episode_id in set(kept) - running:
            del kept[episode_id]  # finished episodes: free their memory
        return batch


class MemoryStateFromModule(ConnectorV2):
    """Module-to-env: keep the full ``STATE_OUT`` for the next step, leave the step's record.

    Runs after RLlib's ``UnBatchToIndividualItems`` (data per episode, numpy)."""

    def __call__(
        self,
        *,
        rl_module: Any,
        batch: dict[str, Any],
        episodes: list,
        explore: bool | None = None,
        shared_data: dict | None = None,
        **kwargs: Any,
    ) -> Any:
        if Columns.STATE_OUT not in batch:
            return batch
        spec = _single_module(rl_module).state_spec()
        kept = shared_data.setdefault(_STATES, {})
        for key, items in batch[Columns.STATE_OUT].items():
            episode_id = key[0]
            (state,) = items
            kept[episode_id] = state
            # Copy: a view would keep the whole state array alive inside the episode.
            items[0] = {k: np.array(v) for k, v in step_record(state, spec).items()}
        return batch


class MemoryStateToTrainBatch(ConnectorV2):
    """Learner: ``STATE_IN`` at every ``max_seq_len`` chunk start and ``first`` ``[L]`` per chunk.

    Insert before ``AddStatesFromEpisodesToBatch`` (after ``AddTimeDimToBatchAndZeroPad``, which
    has zero-padded the other columns into the same chunks)."""

    def __call__(
        self,
        *,
        rl_module: Any,
        batch: dict[str, Any],
        episodes: list,
        explore: bool | None = None,
        shared_data: dict | None = None,
        **kwargs: Any,
    ) -> Any:
        module = _single_module(rl_module)
        if module is None or not module.is_stateful() or Columns.STATE_IN in batch:
            return batch
        max_seq_len = module.model_config["max_seq_len"]
        for episode in self.single_agent_episode_iterator(episodes, agents_that_stepped_only=False):
            if len(episode) == 0:
                continue
            starts = np.arange(0, len(episode), max_seq_len)
            states = rebuild_from_episode(module, episode, starts)
            self.add_n_batch_items(batch, Columns.STATE_IN, states, len(starts), episode)
            first = np.zeros((len(starts), max_seq_len), dtype=bool)
            first[0, 0] = episode.t_started == 0
            self.add_n_batch_items(batch, FIRST, first, len(starts), episode)
        return batch


def env_to_module_pipeline(env: Any = None, spaces: Any = None, device: Any = None) -> list:
    """The env-to-module pieces (use with ``add_default_connectors_to_env_to_module_pipeline=
    False``); the signature is the one ``config.env_runners(env_to_module_connector=...)`` calls."""
    return [
        AddObservationsFromEpisodesToBatch(),
        AddTimeDimToBatchAndZeroPad(),
        MemoryStateToModule(),
        BatchIndividualItems(),
        NumpyToTensor(device=device),
    ]


def module_to_env_pieces(env: Any = None, spaces: Any = None) -> list:
    """Custom module-to-env pieces (RLlib's defaults stay around them)."""
    return [MemoryStateFromModule()]


def compact_state_env_runner_kwargs(memory_len: int = 0) -> dict:
    """``config.env_runners(**kwargs)`` for a module with memrl's compact per-step state.

    memory_len: the longest window of the module's cores (0 for carry-only cores).
    """
    return dict(
        env_to_module_connector=env_to_module_pipeline,
        add_default_connectors_to_env_to_module_pipeline=False,
        module_to_env_connector=module_to_env_pieces,
        episode_lookback_horizon=max(1, memory_len),
    )
