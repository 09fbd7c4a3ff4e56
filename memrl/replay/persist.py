"""Rows of plain arrays plus JSON metadata, written to Arrow IPC files and read back all-or-nothing.

This module knows files, not shards: :func:`write_rows` stores ``{column: [N, *shape] array}``
and a JSON-able ``meta`` dict under a part id; :func:`read_rows` verifies and returns them. The
replay shard decides what its columns and metadata are (see ``ReplayShard.save``).

Files in a directory, per part ``i`` (``iii`` = zero-padded):

* ``shard-iii-<tag>.arrow`` — an Arrow IPC file, one row per stored item; a column of shape
  ``()`` is a plain Arrow column, any other a ``fixed_size_list`` of ``prod(shape)`` values.
* ``_manifest-shard-iii.json`` — ``{"file", "rows", "bytes", "sha256", "format_version"}``.

Writing is atomic: the data file gets a fresh name (temp file, fsync, rename), then the manifest
is replaced by rename, then the previous data file is deleted; a crash at any point leaves the
previous checkpoint readable. Reading checks size and SHA-256 against the manifest and the row
count against the file before anything is loaded.

The directory is also an Arrow dataset: ``pyarrow.dataset.dataset(dir, format="ipc")`` reads all
parts' rows (names starting ``_`` or ``.`` are skipped by default). The schema metadata key
``memrl.replay`` holds ``meta`` as JSON, with ``format_version``.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

FORMAT_VERSION = 1
META_KEY = b"memrl.replay"


class ReplayCheckpointError(ValueError):
    """A replay checkpoint is missing, truncated, corrupt, or does not fit the shard."""


def manifest_path(directory: Path, shard_id: int) -> Path:
    return directory / f"_manifest-shard-{shard_id:03d}.json"


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


def rows_table(rows: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> pa.Table:
    """``rows`` (each ``[N, *shape]``) as an Arrow table carrying ``meta`` (plus the format)."""
    columns = {name: _column(values, tuple(values.shape[1:])) for name, values in rows.items()}
    data = {"format_version": FORMAT_VERSION, **meta}
    table = pa.table(columns)
    return table.replace_schema_metadata({META_KEY: json.dumps(data).encode()})


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes (read in 1 MiB blocks); shared by every memrl manifest."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_atomic(path: Path, write) -> None:
    """``write(tmp)`` into a temporary name beside ``path``, fsync, then rename into place: a
    reader never sees a half-written file. The temporary file is removed if ``write`` fails."""
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_rows(
    directory: Path, part: int, rows: Mapping[str, np.ndarray], meta: Mapping[str, Any]
) -> Path:
    """Write ``rows`` and ``meta`` of part ``part`` atomically into ``directory``; returns the
    data file's path (the previous file of that part is removed once the manifest names it)."""
    directory.mkdir(parents=True, exist_ok=True)
    table = rows_table(rows, meta)
    data_path = directory / f"shard-{part:03d}-{uuid.uuid4().hex[:12]}.arrow"

    def write_table(tmp: Path) -> None:
        with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)

    write_atomic(data_path, write_table)
    manifest = {
        "format_version": FORMAT_VERSION,
        "file": data_path.name,
        "rows": table.num_rows,
        "bytes": data_path.stat().st_size,
        "sha256": sha256_file(data_path),
    }
    mpath = manifest_path(directory, part)
    previous = _read_manifest(mpath).get("file") if mpath.exists() else None
    write_atomic(mpath, lambda tmp: tmp.write_text(json.dumps(manifest, indent=2)))
    if previous and previous != data_path.name:
        (directory / previous).unlink(missing_ok=True)
    return data_path


def _read_manifest(path: Path) -> dict[str, Any]:
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError as err:
        raise ReplayCheckpointError(f"replay checkpoint manifest {path} does not exist") from err
    except (OSError, ValueError) as err:
        raise ReplayCheckpointError(
            f"replay checkpoint manifest {path} is unreadable: {err}"
        ) from err
    missing = {"file", "rows", "bytes", "sha256", "format_version"} - set(manifest)
    if missing:
        raise ReplayCheckpointError(f"replay checkpoint manifest {path} lacks {sorted(missing)}")
    return manifest


def read_rows(
    directory: Path, part: int, columns: Mapping[str, tuple[tuple[int, ...], np.dtype]]
) -> tuple[dict[str, np.ndarray], dict[str, Any], Path]:
    """Read and verify part ``part``: ``(rows, meta, data file path)``.

    ``columns`` names each wanted column with its per-row shape and dtype; ``rows[name]`` comes
    back as ``[N, *shape]`` of that dtype. Raises ReplayCheckpointError on a missing file, a size /
    checksum / row-count mismatch, an unreadable Arrow file or metadata, or a missing column.
    """
    mpath = manifest_path(directory, part)
    manifest = _read_manifest(mpath)
    if manifest["format_version"] != FORMAT_VERSION:
        raise ReplayCheckpointError(
            f"{mpath}: format_version {manifest['format_version']}, expected {FORMAT_VERSION}"
        )
    path = directory / manifest["file"]
    if not path.exists():
        raise ReplayCheckpointError(
            f"replay checkpoint file {path} (named in {mpath}) does not exist"
        )
    size = path.stat().st_size
    if size != manifest["bytes"]:
        raise ReplayCheckpointError(
            f"replay checkpoint file {path} has {size} bytes, the manifest says "
            f"{manifest['bytes']}: truncated or overwritten"
        )
    if sha256_file(path) != manifest["sha256"]:
        raise ReplayCheckpointError(
            f"replay checkpoint file {path} fails its SHA-256 check: corrupt"
        )
    try:
        with pa.memory_map(str(path), "r") as source:
            table = pa.ipc.open_file(source).read_all()
    except (pa.ArrowException, OSError) as err:
        raise ReplayCheckpointError(
            f"replay checkpoint file {path} is not a readable Arrow file: {err}"
        ) from err
    if table.num_rows != manifest["rows"]:
        raise ReplayCheckpointError(
            f"replay checkpoint file {path} has {table.num_rows} rows, manifest says "
            f"{manifest['rows']}"
        )
    try:
        meta = json.loads((table.schema.metadata or {}).get(META_KEY, b"{}"))
    except ValueError as err:
        raise ReplayCheckpointError(
            f"replay checkpoint file {path} has unreadable metadata"
        ) from err
    rows: dict[str, np.ndarray] = {}
    try:
        for name, (shape, dtype) in columns.items():
            rows[name] = _to_numpy(table.column(name), tuple(shape), np.dtype(dtype))
    except (KeyError, ValueError, pa.ArrowException) as err:
        raise ReplayCheckpointError(
            f"replay checkpoint file {path} has a bad column: {err}"
        ) from err
    return rows, meta, path
