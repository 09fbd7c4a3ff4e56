"""Several datasets of one env written as one (D4RL's mixtures, e.g. medium-expert).

The inputs must agree on env id, env kwargs, observation and action space; their episodes are
copied in input order and renumbered ``0 .. N-1`` (ids stay unique), and the result's
``collector`` is ``{"policy": "mixture", "sources": [...]}`` with each input's path, dataset
id, collector and the ids its episodes got. Every input's metadata and files are checked before
anything is written, and the output is written atomically (:class:`DatasetWriter`): on any
error nothing is left at the output.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from memrl.data.dataset import (
    DatasetError,
    DatasetInfo,
    DatasetWriter,
    check_files,
    iter_episodes,
    read_info,
)

# What every input must share with the first, and how to name it in an error.
_MUST_MATCH = ("env_id", "env_kwargs", "observation_space", "action_space")


def check_compatible(infos: Sequence[DatasetInfo]) -> None:
    """Raise DatasetError naming the first input that differs from the first input in env id,
    env kwargs or a space, with both values."""
    first = infos[0]
    for info in infos[1:]:
        for field in _MUST_MATCH:
            ours, theirs = getattr(first, field), getattr(info, field)
            if ours != theirs:
                raise DatasetError(
                    f"cannot merge: {info.path} has {field} {theirs}, {first.path} has {ours}"
                )


def merge_datasets(
    out: str | Path, inputs: Sequence[str | Path], *, dataset_id: str | None = None
) -> DatasetWriter:
    """Write the episodes of ``inputs`` (in order) into a new dataset at ``out``; returns the
    closed writer. Raises DatasetError (an input missing, corrupt or incompatible: named) or
    ValueError (no inputs; ``out`` already holds data); nothing is written then."""
    if not inputs:
        raise ValueError("merge needs at least one input dataset")
    infos = [read_info(path) for path in inputs]
    check_compatible(infos)
    for info in infos:
        check_files(info)
    sources: list[dict[str, Any]] = []
    first_id = 0
    for info in infos:
        sources.append(
            {
                "path": str(info.path),
                "dataset_id": info.dataset_id,
                "episodes": info.total_episodes,
                "steps": info.total_steps,
                "episode_ids": [first_id, first_id + info.total_episodes],
                "collector": info.collector,
            }
        )
        first_id += info.total_episodes
    base = infos[0]
    with DatasetWriter(
        out,
        base.observation_space,
        base.action_space,
        env_id=base.env_id,
        env_kwargs=base.env_kwargs,
        dataset_id=dataset_id,
        collector={"policy": "mixture", "sources": sources},
    ) as writer:
        for info in infos:
            for episode in iter_episodes(info.path):
                writer.add(episode)
    return writer
