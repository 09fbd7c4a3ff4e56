"""Offline datasets on disk, in Minari's local Parquet layout (Farama's offline-RL standard).

A dataset directory ``DIR`` (Minari's ``<dataset>/``; copy it under
``~/.minari/datasets/<namespace>/<name>/`` and ``minari.load_dataset`` reads it):

* ``DIR/data/metadata.json`` — Minari's dataset metadata: ``dataset_id``, ``minari_version``,
  ``data_format: "parquet"``, ``jpeg_encoding: false``, ``total_episodes``, ``total_steps``,
  ``observation_space`` and ``action_space`` (Minari's JSON space form, so the **action bounds**
  travel with the data), ``env_spec`` where gymnasium can serialise it, and memrl's own block
  ``"memrl": {"format_version", "env_id", "env_kwargs", "collector"}``.
* ``DIR/data/<episode_id>/part-0.parquet`` — one episode, one row per step plus a last row
  holding the final observation (Minari stores ``T + 1`` observations); columns:

  ===============  =================================================  ==========================
  column           type                                               meaning
  ===============  =================================================  ==========================
  observations     fixed_size_list<obs dtype>[prod(shape)] (Box),     ``o_0 .. o_T``
                   int64 (Discrete)
  actions          fixed_size_list<act dtype>[d] (Box), int64         ``a_t``; the last row 0
  rewards          float64                                            ``r_t``; the last row 0
  terminations,    bool                                               set on the step that
  truncations                                                         ended the episode
  ===============  =================================================  ==========================

* ``DIR/data/<episode_id>/metadata.json`` — ``{"id", "total_steps"}``.

With pyarrow alone, all steps of all episodes (episode ids from the directory names)::

    import pyarrow as pa, pyarrow.dataset as pads
    by_id = pads.partitioning(pa.schema([("episode_id", pa.int64())]))
    pads.dataset(f"{DIR}/data", format="parquet", partitioning=by_id,
                 ignore_prefixes=[".", "_", "metadata.json"])

RLlib's offline API (``config.offline_data(input_=...)``, Ray 2.60) reads Parquet through
``ray.data.read_parquet`` and its ``OfflinePreLearner``, whose default schema wants one
*transition* per row: ``obs``, ``actions``, ``rewards``, ``new_obs``, ``terminateds``,
``truncateds``, ``eps_id``. ``input_read_schema`` can map our column names onto those, but
``new_obs`` is the next row's ``observations``, a shift it cannot express; so RLlib reads these
files only after a conversion (a ``map_batches`` over each episode that adds ``new_obs`` and
drops the final row, or a custom ``prelearner_class``). Not done here: no RLlib learner reads
these datasets yet.

Writes are atomic per dataset: :class:`DatasetWriter` fills a hidden sibling folder
(``DIR/.data.partial-*``) and renames it to ``DIR/data`` when it closes, so ``DIR/data`` is
never half-written (each file inside is also written atomically, and ``metadata.json`` last).
Readers check every file's schema and row count *before* returning anything and raise
:class:`DatasetError` naming the file. :func:`iter_episodes` streams one episode file at a time
(datasets larger than memory).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from memrl.data.episode import Episode
from memrl.data.spaces import deserialize_space, serialize_space
from memrl.replay.persist import write_atomic

FORMAT_VERSION = 1
MINARI_VERSION = "0.5.4"  # the Minari release whose layout this follows (checked against it)
METADATA = "metadata.json"
PART = "part-0.parquet"


class DatasetError(ValueError):
    """A dataset is missing, incomplete, corrupt, or not what the reader expects."""


@dataclass(frozen=True)
class DatasetInfo:
    """What ``DIR/data/metadata.json`` says."""

    path: Path
    dataset_id: str
    observation_space: gym.Space
    action_space: gym.Space
    total_episodes: int
    total_steps: int
    env_id: str | None
    env_kwargs: dict[str, Any]
    collector: dict[str, Any]


def _space_type(space: gym.Space) -> pa.DataType:
    if isinstance(space, gym.spaces.Discrete):
        return pa.int64()
    return pa.list_(pa.from_numpy_dtype(space.dtype), int(np.prod(space.shape, dtype=np.int64)))


def _encode(space: gym.Space, values: np.ndarray) -> pa.Array:
    if isinstance(space, gym.spaces.Discrete):
        return pa.array(np.asarray(values, dtype=np.int64).reshape(-1))
    flat = np.ascontiguousarray(np.asarray(values, dtype=space.dtype)).reshape(-1)
    return pa.FixedSizeListArray.from_arrays(pa.array(flat), type=_space_type(space))


def _decode(space: gym.Space, column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if isinstance(space, gym.spaces.Discrete):
        return column.to_numpy(zero_copy_only=False).astype(np.int64)
    values = column.flatten().to_numpy(zero_copy_only=False).astype(space.dtype, copy=False)
    return values.reshape(len(column), *space.shape)


def expected_schema(observation_space: gym.Space, action_space: gym.Space) -> pa.Schema:
    return pa.schema(
        [
            ("observations", _space_type(observation_space)),
            ("actions", _space_type(action_space)),
            ("rewards", pa.float64()),
            ("terminations", pa.bool_()),
            ("truncations", pa.bool_()),
        ]
    )


def _env_spec_json(env_id: str | None, env_kwargs: dict[str, Any]) -> str | None:
    if env_id is None:
        return None
    try:
        spec = gym.spec(env_id)
        spec = spec.__class__(**{**spec.__dict__, "kwargs": {**spec.kwargs, **env_kwargs}})
        return spec.to_json()
    except Exception:  # an unregistered id or unserialisable kwargs: the memrl block has them
        return None


class DatasetWriter:
    """Writes episodes into a new dataset directory; :meth:`close` writes ``metadata.json`` and
    moves the finished ``data/`` into place, :meth:`abort` discards what was written. As a
    context manager it closes on success and aborts on an exception.

    Raises ValueError if ``directory`` already holds a dataset, or a space is unsupported.
    """

    def __init__(
        self,
        directory: str | Path,
        observation_space: gym.Space,
        action_space: gym.Space,
        *,
        env_id: str | None,
        env_kwargs: dict[str, Any] | None = None,
        dataset_id: str | None = None,
        collector: dict[str, Any] | None = None,
    ) -> None:
        self.root = Path(directory)
        self.data = self.root / "data"
        if (self.data / METADATA).exists() or (self.data.exists() and any(self.data.iterdir())):
            raise ValueError(f"{self.data} already holds data; choose a new --out directory")
        self.root.mkdir(parents=True, exist_ok=True)
        self._partial = Path(tempfile.mkdtemp(prefix=".data.partial-", dir=self.root))
        self.observation_space, self.action_space = observation_space, action_space
        self._obs_space_json = serialize_space(observation_space)
        self._action_space_json = serialize_space(action_space)
        self.schema = expected_schema(observation_space, action_space)
        self.env_id, self.env_kwargs = env_id, dict(env_kwargs or {})
        name = (env_id or "dataset").replace("/", "-")
        self.dataset_id = dataset_id or f"memrl/{name}-v0"
        self.collector = dict(collector or {})
        self.total_episodes = 0
        self.total_steps = 0

    def add(self, episode: Episode) -> None:
        """Append ``episode`` (its ``final_obs`` must be set: Minari stores ``T + 1`` obs)."""
        if episode.final_obs is None:
            raise ValueError("an episode written to a dataset needs its final_obs")
        steps = len(episode)
        obs = np.concatenate([np.asarray(episode.obs), np.asarray(episode.final_obs)[None]])
        pad_action = np.zeros((1, *np.asarray(episode.action).shape[1:]), episode.action.dtype)
        terminations = np.zeros(steps + 1, dtype=bool)
        truncations = np.zeros(steps + 1, dtype=bool)
        terminations[steps - 1] = episode.terminated
        truncations[steps - 1] = episode.truncated
        table = pa.table(
            {
                "observations": _encode(self.observation_space, obs),
                "actions": _encode(
                    self.action_space, np.concatenate([np.asarray(episode.action), pad_action])
                ),
                "rewards": pa.array(np.append(np.asarray(episode.reward, np.float64), 0.0)),
                "terminations": pa.array(terminations),
                "truncations": pa.array(truncations),
            },
            schema=self.schema,
        )
        folder = self._partial / str(self.total_episodes)
        folder.mkdir()
        write_atomic(folder / PART, lambda tmp: pq.write_table(table, tmp))
        meta = {"id": self.total_episodes, "total_steps": steps}
        write_atomic(folder / METADATA, lambda tmp: tmp.write_text(json.dumps(meta)))
        self.total_episodes += 1
        self.total_steps += steps

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, kind: type | None, *_: object) -> None:
        if kind is not None:
            self.abort()
        elif self._partial.exists():
            self.close()

    def abort(self) -> None:
        """Discard everything written so far (``DIR/data`` is not created)."""
        shutil.rmtree(self._partial, ignore_errors=True)

    def close(self) -> Path:
        """Write ``metadata.json`` and move ``data/`` into place; returns the dataset
        directory."""
        meta = {
            "dataset_id": self.dataset_id,
            "minari_version": MINARI_VERSION,
            "data_format": "parquet",
            "jpeg_encoding": False,
            "total_episodes": self.total_episodes,
            "total_steps": self.total_steps,
            "observation_space": self._obs_space_json,
            "action_space": self._action_space_json,
            "algorithm_name": str(self.collector.get("policy", "memrl")),
            "memrl": {
                "format_version": FORMAT_VERSION,
                "env_id": self.env_id,
                "env_kwargs": self.env_kwargs,
                "collector": self.collector,
            },
        }
        spec = _env_spec_json(self.env_id, self.env_kwargs)
        if spec is not None:
            meta["env_spec"] = spec
        write_atomic(
            self._partial / METADATA, lambda tmp: tmp.write_text(json.dumps(meta, indent=2))
        )
        if self.data.is_dir():  # an empty data/ (checked in __init__) is replaced
            self.data.rmdir()
        os.rename(self._partial, self.data)
        return self.root


def _data_dir(directory: str | Path) -> Path:
    root = Path(directory)
    return root if (root / METADATA).exists() and root.name == "data" else root / "data"


def read_info(directory: str | Path) -> DatasetInfo:
    """The dataset's metadata. Raises DatasetError naming the file if it is missing or bad
    (including missing action bounds: an action space without finite bounds)."""
    data = _data_dir(directory)
    path = data / METADATA
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError as err:
        raise DatasetError(f"{path} does not exist: not a dataset, or an unfinished one") from err
    except (OSError, ValueError) as err:
        raise DatasetError(f"{path} is unreadable: {err}") from err
    missing = {"total_episodes", "total_steps", "observation_space", "action_space"} - set(meta)
    if missing:
        raise DatasetError(f"{path} lacks {sorted(missing)}")
    try:
        obs_space = deserialize_space(meta["observation_space"], f"{path} observation_space")
        action_space = deserialize_space(meta["action_space"], f"{path} action_space")
    except ValueError as err:
        raise DatasetError(str(err)) from err
    if isinstance(action_space, gym.spaces.Box) and not (
        np.all(np.isfinite(action_space.low)) and np.all(np.isfinite(action_space.high))
    ):
        raise DatasetError(f"{path}: action_space has no finite bounds: {action_space}")
    own = meta.get("memrl", {})
    return DatasetInfo(
        path=data.parent,
        dataset_id=str(meta.get("dataset_id", "")),
        observation_space=obs_space,
        action_space=action_space,
        total_episodes=int(meta["total_episodes"]),
        total_steps=int(meta["total_steps"]),
        env_id=own.get("env_id"),
        env_kwargs=dict(own.get("env_kwargs", {})),
        collector=dict(own.get("collector", {})),
    )


def check_files(info: DatasetInfo) -> list[tuple[Path, int]]:
    """Every episode file with its step count, after checking schemas and row counts; raises
    DatasetError naming the first file that is missing, unreadable or does not match."""
    data = info.path / "data"
    schema = expected_schema(info.observation_space, info.action_space)
    files, total = [], 0
    for episode_id in range(info.total_episodes):
        path = data / str(episode_id) / PART
        meta_path = path.with_name(METADATA)
        try:
            steps = int(json.loads(meta_path.read_text())["total_steps"])
            file_meta = pq.read_metadata(path)
            file_schema = file_meta.schema.to_arrow_schema()
        except FileNotFoundError as err:
            raise DatasetError(f"{err.filename or path} is missing") from err
        except (OSError, ValueError, KeyError, pa.ArrowException) as err:
            raise DatasetError(f"{path} (or its metadata.json) is unreadable: {err}") from err
        if not file_schema.remove_metadata().equals(schema):
            raise DatasetError(f"{path} has schema {file_schema}, expected {schema}")
        if file_meta.num_rows != steps + 1:
            raise DatasetError(f"{path} has {file_meta.num_rows} rows, expected {steps} + 1")
        files.append((path, steps))
        total += steps
    if total != info.total_steps:
        raise DatasetError(f"{data / METADATA} says {info.total_steps} steps, files hold {total}")
    return files


def _read_episode(info: DatasetInfo, path: Path, episode_id: int, steps: int) -> Episode:
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as err:
        raise DatasetError(f"{path} is corrupt: {err}") from err
    if table.num_rows != steps + 1:
        raise DatasetError(f"{path} has {table.num_rows} rows, expected {steps + 1}")
    obs = _decode(info.observation_space, table.column("observations"))
    action = _decode(info.action_space, table.column("actions"))[:steps]
    terminations = table.column("terminations").to_numpy()
    truncations = table.column("truncations").to_numpy()
    return Episode(
        obs=obs[:steps],
        action=action,
        reward=table.column("rewards").to_numpy()[:steps].astype(np.float32),
        terminated=bool(terminations[steps - 1]) if steps else False,
        truncated=bool(truncations[steps - 1]) if steps else False,
        episode_id=episode_id,
        final_obs=obs[steps],
        source=str(path),
    )


def iter_episodes(directory: str | Path) -> Iterator[Episode]:
    """Stream the dataset's episodes in id order, one file in memory at a time. Every file's
    schema and row count is checked before the first episode is yielded."""
    info = read_info(directory)
    for episode_id, (path, steps) in enumerate(check_files(info)):
        yield _read_episode(info, path, episode_id, steps)


def load_episodes(directory: str | Path) -> tuple[DatasetInfo, list[Episode]]:
    """All episodes in memory, all or nothing (DatasetError naming the first bad file)."""
    info = read_info(directory)
    return info, list(iter_episodes(directory))
