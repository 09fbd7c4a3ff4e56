"""Episodes rebuilt from replay shards' Arrow checkpoints (``memrl.replay.persist``'s files).

Rows are ordered by ``(stream, stream_step)`` and cut into episodes at every ``first`` step.
Pieces are never glued across a hole: where the stored steps of a stream skip a step (the ring
overwrote it, or a writer lost a chunk), the piece before ends *unfinished* (neither terminated
nor truncated) and the piece after has ``starts_at_first=False``. The last stored steps of a
stream that has not finished its episode form an unfinished episode too. Replay stores no
observation after an episode's last step, so ``final_obs`` is None.

All reading of the checkpoint files goes through :func:`read_shard_tables` (manifest, size and
SHA-256 checks, then pyarrow), so that a change of the checkpoint layout touches one function.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from memrl.data.dataset import DatasetError
from memrl.data.episode import Episode
from memrl.replay.persist import sha256_file

META_KEY = b"memrl.replay"  # the schema metadata key memrl.replay.persist writes


def read_shard_tables(directory: str | Path) -> list[tuple[Path, pa.Table, dict[str, Any]]]:
    """``(data file, table, memrl.replay metadata)`` of every shard checkpointed in
    ``directory``, each verified against its manifest. Raises DatasetError naming the file."""
    directory = Path(directory)
    manifests = sorted(directory.glob("_manifest-shard-*.json"))
    if not manifests:
        raise DatasetError(f"{directory} holds no replay checkpoint (_manifest-shard-*.json)")
    out = []
    for mpath in manifests:
        try:
            manifest = json.loads(mpath.read_text())
            path = directory / manifest["file"]
            size_ok = path.stat().st_size == manifest["bytes"]
        except (OSError, ValueError, KeyError) as err:
            raise DatasetError(
                f"replay manifest {mpath} or its data file is unreadable: {err}"
            ) from err
        if not size_ok or sha256_file(path) != manifest["sha256"]:
            raise DatasetError(f"replay checkpoint {path} fails its size/SHA-256 check: corrupt")
        try:
            with pa.memory_map(str(path), "r") as source:
                table = pa.ipc.open_file(source).read_all()
            meta = json.loads((table.schema.metadata or {})[META_KEY])
        except (pa.ArrowException, OSError, KeyError, ValueError) as err:
            raise DatasetError(f"replay checkpoint {path} is unreadable: {err}") from err
        out.append((path, table, meta))
    return out


def _column(table: pa.Table, name: str, shape: tuple[int, ...], dtype: str, path: Path):
    try:
        array = table.column(name).combine_chunks()
    except KeyError as err:
        raise DatasetError(f"replay checkpoint {path} lacks column {name!r}") from err
    if shape:
        array = array.flatten()
    values = array.to_numpy(zero_copy_only=False).astype(dtype, copy=False)
    return values.reshape(table.num_rows, *shape)


def episodes_from_replay_checkpoint(directory: str | Path) -> list[Episode]:
    """Every episode (or piece of one) stored in the checkpoint, ordered by (stream, step)."""
    episodes: list[Episode] = []
    for path, table, meta in read_shard_tables(directory):
        config, shapes = meta["config"], {k: tuple(v) for k, v in meta["field_shapes"].items()}
        cols = {
            "stream": _column(table, "stream", (), "int64", path),
            "stream_step": _column(table, "stream_step", (), "int64", path),
            "obs": _column(table, "obs", shapes["obs"], config["obs_dtype"], path),
            "action": _column(table, "action", shapes["action"], config["action_dtype"], path),
            "reward": _column(table, "reward", (), "float32", path),
        }
        for flag in ("first", "terminated", "truncated"):
            cols[flag] = _column(table, flag, (), "bool", path)
        order = np.lexsort((cols["stream_step"], cols["stream"]))
        cols = {k: v[order] for k, v in cols.items()}
        stream, step = cols["stream"], cols["stream_step"]
        # A piece starts at a new stream, a hole in the steps, or an episode's first step.
        starts = np.ones(len(step), dtype=bool)
        starts[1:] = (stream[1:] != stream[:-1]) | (step[1:] != step[:-1] + 1) | cols["first"][1:]
        bounds = [*np.flatnonzero(starts), len(step)]
        for a, b in zip(bounds[:-1], bounds[1:], strict=False):
            episodes.append(
                Episode(
                    obs=cols["obs"][a:b],
                    action=cols["action"][a:b],
                    reward=cols["reward"][a:b],
                    terminated=bool(cols["terminated"][b - 1]),
                    truncated=bool(cols["truncated"][b - 1]),
                    episode_id=len(episodes),
                    starts_at_first=bool(cols["first"][a]),
                    stream=int(stream[a]),
                    start_step=int(step[a]),
                    source=str(path),
                )
            )
    return episodes
