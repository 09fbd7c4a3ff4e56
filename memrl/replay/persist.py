"""Checkpoint a replay shard to Arrow IPC files, and read it back all-or-nothing.

Files in a checkpoint directory, per shard ``i`` (``iii`` = zero-padded):

* ``shard-iii-<tag>.arrow`` — an Arrow IPC file, one row per stored step (schema below).
* ``_manifest-shard-iii.json`` — ``{"file", "rows", "bytes", "sha256", "format_version"}``.

Writing is atomic: the data file gets a fresh name (temp file, fsync, rename), then the manifest
is replaced by rename, then the previous data file is deleted; a crash at any point leaves the
previous checkpoint readable. Reading checks size and SHA-256 against the manifest and the row
count against the file before anything is loaded.

The directory is also an Arrow dataset: ``pyarrow.dataset.dataset(dir, format="ipc")`` reads all
shards' steps (names starting ``_`` or ``.`` are skipped by default). Schema, one row per step:

=================  ==================================  ========================================
column             type                                meaning
=================  ==================================  ========================================
lane, slot         int32                               position in the shard's ring
stream             int64                               stream (writer env) id
stream_step        int64                               step index within the stream
episode_start      int64                               stream_step of the episode's first step
generation         int64                               write counter: the item's version
priority           float64                             sum-tree leaf (priority**alpha; 0 = not
                                                       a valid start)
obs, action        fixed_size_list<dtype>[prod(shape)]  (a plain column when the shape is ())
reward             float32
terminated,        bool
truncated, first
state.<key>        fixed_size_list<float32|float16|     a carry's value before the step, or a
                   uint16>[prod(slice_shape)]           window's slice of the step; uint16 holds
                                                       bfloat16 bits
=================  ==================================  ========================================

The schema metadata key ``memrl.replay`` holds JSON: the ReplayConfig, the state spec, the
per-field shapes and the shard's lane bookkeeping (needed for an exact restore).
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

if TYPE_CHECKING:
    from memrl.replay.shard import ReplayShard

FORMAT_VERSION = 1
META_KEY = b"memrl.replay"
BOOKKEEPING_COLUMNS = {
    "lane": np.int32,
    "slot": np.int32,
    "stream": np.int64,
    "stream_step": np.int64,
    "episode_start": np.int64,
    "generation": np.int64,
    "priority": np.float64,
}
# Config fields that may differ between the saving and the restoring shard.
_FREE_CONFIG_FIELDS = ("seed", "extra")


class CheckpointError(ValueError):
    """A replay checkpoint is missing, truncated, corrupt, or does not fit the shard."""


def manifest_path(directory: Path, shard_id: int) -> Path:
    return directory / f"_manifest-shard-{shard_id:03d}.json"


def _describe_spec(shard: ReplayShard) -> dict[str, Any]:
    return {
        key: {"kind": spec.kind, "shape": list(spec.shape), "dtype": str(spec.dtype)}
        for key, spec in shard.state_spec.items()
    }


def _column(values: np.ndarray, shape: tuple[int, ...]) -> pa.Array:
    if not shape:
        return pa.array(values)
    width = int(np.prod(shape))
    flat = pa.array(np.ascontiguousarray(values).reshape(-1))
    return pa.FixedSizeListArray.from_arrays(flat, width)


def _to_numpy(column: pa.ChunkedArray, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    array = column.combine_chunks()
    if shape:
        array = array.flatten()
    values = array.to_numpy(zero_copy_only=False).astype(dtype, copy=False)
    return values.reshape(len(column), *shape)


def shard_table(shard: ReplayShard) -> pa.Table:
    """The shard's stored steps as an Arrow table with its metadata (schema in module doc)."""
    contents = shard._export_contents()
    rows = contents["rows"]
    columns = {name: pa.array(rows[name].astype(dt)) for name, dt in BOOKKEEPING_COLUMNS.items()}
    for name, shape in shard.field_shapes.items():
        columns[name] = _column(rows[name], shape)
    meta = {
        "format_version": FORMAT_VERSION,
        "shard_id": shard.shard_id,
        "config": shard.config.to_dict(),
        "state_spec": _describe_spec(shard),
        "field_shapes": {k: list(v) for k, v in shard.field_shapes.items()},
        "shard": contents["meta"],
    }
    table = pa.table(columns)
    return table.replace_schema_metadata({META_KEY: json.dumps(meta).encode()})


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_atomic(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_shard(shard: ReplayShard, directory: Path) -> Path:
    """Write ``shard`` atomically into ``directory``; returns the data file's path."""
    directory.mkdir(parents=True, exist_ok=True)
    table = shard_table(shard)
    data_path = directory / f"shard-{shard.shard_id:03d}-{uuid.uuid4().hex[:12]}.arrow"

    def write_table(tmp: Path) -> None:
        with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)

    _write_atomic(data_path, write_table)
    manifest = {
        "format_version": FORMAT_VERSION,
        "file": data_path.name,
        "rows": table.num_rows,
        "bytes": data_path.stat().st_size,
        "sha256": _sha256(data_path),
    }
    mpath = manifest_path(directory, shard.shard_id)
    previous = _read_manifest(mpath).get("file") if mpath.exists() else None
    _write_atomic(mpath, lambda tmp: tmp.write_text(json.dumps(manifest, indent=2)))
    if previous and previous != data_path.name:
        (directory / previous).unlink(missing_ok=True)
    return data_path


def _read_manifest(path: Path) -> dict[str, Any]:
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError as err:
        raise CheckpointError(f"replay checkpoint manifest {path} does not exist") from err
    except (OSError, ValueError) as err:
        raise CheckpointError(f"replay checkpoint manifest {path} is unreadable: {err}") from err
    missing = {"file", "rows", "bytes", "sha256", "format_version"} - set(manifest)
    if missing:
        raise CheckpointError(f"replay checkpoint manifest {path} lacks {sorted(missing)}")
    return manifest


def read_shard(shard: ReplayShard, directory: Path) -> dict[str, Any]:
    """Read and verify the checkpoint of ``shard.shard_id``; returns contents for the shard.

    Raises CheckpointError on a missing file, a size / checksum / row-count mismatch, an
    unreadable Arrow file, or a config or state spec other than the shard's.
    """
    mpath = manifest_path(directory, shard.shard_id)
    manifest = _read_manifest(mpath)
    if manifest["format_version"] != FORMAT_VERSION:
        raise CheckpointError(
            f"{mpath}: format_version {manifest['format_version']}, expected {FORMAT_VERSION}"
        )
    path = directory / manifest["file"]
    if not path.exists():
        raise CheckpointError(f"replay checkpoint file {path} (named in {mpath}) does not exist")
    size = path.stat().st_size
    if size != manifest["bytes"]:
        raise CheckpointError(
            f"replay checkpoint file {path} has {size} bytes, the manifest says "
            f"{manifest['bytes']}: truncated or overwritten"
        )
    if _sha256(path) != manifest["sha256"]:
        raise CheckpointError(f"replay checkpoint file {path} fails its SHA-256 check: corrupt")
    try:
        with pa.memory_map(str(path), "r") as source:
            table = pa.ipc.open_file(source).read_all()
    except (pa.ArrowException, OSError) as err:
        raise CheckpointError(
            f"replay checkpoint file {path} is not a readable Arrow file: {err}"
        ) from err
    if table.num_rows != manifest["rows"]:
        raise CheckpointError(
            f"replay checkpoint file {path} has {table.num_rows} rows, manifest says "
            f"{manifest['rows']}"
        )
    try:
        meta = json.loads((table.schema.metadata or {}).get(META_KEY, b"{}"))
    except ValueError as err:
        raise CheckpointError(f"replay checkpoint file {path} has unreadable metadata") from err
    if "shard" not in meta:
        raise CheckpointError(f"replay checkpoint file {path} lacks its memrl.replay metadata")
    _check_compatible(shard, meta, path)
    rows: dict[str, np.ndarray] = {}
    try:
        for name, dtype in BOOKKEEPING_COLUMNS.items():
            rows[name] = _to_numpy(table.column(name), (), np.dtype(dtype))
        for name, shape in shard.field_shapes.items():
            rows[name] = _to_numpy(table.column(name), shape, shard.field_dtypes[name])
    except (KeyError, ValueError, pa.ArrowException) as err:
        raise CheckpointError(f"replay checkpoint file {path} has a bad column: {err}") from err
    return {"rows": rows, "meta": meta["shard"]}


def _check_compatible(shard: ReplayShard, meta: dict[str, Any], path: Path) -> None:
    if meta.get("shard_id") != shard.shard_id:
        raise CheckpointError(f"{path} holds shard {meta.get('shard_id')}, not {shard.shard_id}")
    saved = dict(meta.get("config", {}))
    mine = shard.config.to_dict()
    for key in _FREE_CONFIG_FIELDS:
        saved.pop(key, None)
        mine.pop(key, None)
    differ = sorted(k for k in set(saved) | set(mine) if saved.get(k) != mine.get(k))
    if differ:
        detail = ", ".join(f"{k}: saved {saved.get(k)!r} vs {mine.get(k)!r}" for k in differ)
        raise CheckpointError(f"{path} was written with another ReplayConfig ({detail})")
    if meta.get("state_spec") != _describe_spec(shard):
        raise CheckpointError(
            f"{path} was written for state spec {meta.get('state_spec')}, this shard has "
            f"{_describe_spec(shard)}"
        )
