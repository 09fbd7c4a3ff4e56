"""The on-disk layout of a run's checkpoints, writing them atomically, and verifying them.

``<output_dir>/checkpoints/<name>/``
    ``iter_000010/algorithm/``     RLlib ``Algorithm.save_to_path`` (weights, optimizer, connectors)
    ``iter_000010/config.yaml``    the resolved config (loads with memrl.config, no ``base``)
    ``iter_000010/state.json``     ``{"iteration", "env_steps", "time_s", "name"}``
    ``iter_000010/manifest.json``  every other file's size and SHA-256, the versions that wrote
                                   it, the config's hash and :data:`FORMAT_VERSION`
    ``latest``                     the name of the newest ``iter_*`` folder

A checkpoint is written into a hidden sibling folder (``.iter_000010.partial-<pid>``) and
renamed into place only once complete, so an ``iter_*`` folder is never half-written; a save that
fails (a full disk) leaves the previous checkpoints as they were.

RLlib's files are pickles: loading one runs code it names. :func:`verify` checks a checkpoint
against its manifest before anything is unpickled; that catches corruption, truncation, missing
files and files mixed from two checkpoints, not a manifest rewritten on purpose. Load only your
own checkpoints or ones you verified.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from memrl.replay.persist import sha256_file

ALGORITHM_DIR = "algorithm"
CONFIG_FILE = "config.yaml"
STATE_FILE = "state.json"
MANIFEST_FILE = "manifest.json"
LATEST_FILE = "latest"
# Bump when the layout or what memrl stores inside changes incompatibly; add the reason here.
# 1: memrl 0.1.0 before manifests (no manifest.json). 2: manifest.json, atomic writes.
FORMAT_VERSION = 2
_PARTIAL = ".partial-"

log = logging.getLogger("memrl.checkpoints")


class CheckpointError(Exception):
    """A checkpoint that cannot be used (corrupt, incomplete, another format) or saved.

    The message is one line naming the checkpoint, the file and what differs.
    """


@dataclass(frozen=True)
class CheckpointState:
    """Where training stood when a checkpoint was written."""

    iteration: int
    env_steps: int
    time_s: float
    name: str


# --- hashing ------------------------------------------------------------------------------------
def config_hash(config: Any) -> str:
    """Hex SHA-256 of the config as canonical JSON (sorted keys): equal configs, equal hash."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _versions() -> dict[str, str]:
    import memrl

    out = {"memrl": memrl.__version__}
    for name in ("ray", "torch"):
        try:
            out[name] = __import__(name).__version__
        except ImportError:  # pragma: no cover - both are dependencies
            out[name] = "missing"
    return out


def _files(folder: Path) -> list[Path]:
    """Every regular file under ``folder`` except the manifest, sorted (relative paths)."""
    return sorted(
        p.relative_to(folder)
        for p in folder.rglob("*")
        if p.is_file() and p.relative_to(folder).as_posix() != MANIFEST_FILE
    )


def build_manifest(folder: Path, config: Any) -> dict[str, Any]:
    """The manifest of a complete checkpoint folder (see the module docstring)."""
    return {
        "format": FORMAT_VERSION,
        "versions": _versions(),
        "config_sha256": config_hash(config),
        "files": {
            rel.as_posix(): {
                "size": (folder / rel).stat().st_size,
                "sha256": sha256_file(folder / rel),
            }
            for rel in _files(folder)
        },
    }


# --- writing ------------------------------------------------------------------------------------
def _write_text(path: Path, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def _replace_text(path: Path, text: str) -> None:
    """Write ``path`` through a temporary file and ``os.replace``: never half-written."""
    tmp = path.with_name(f".{path.name}{_PARTIAL}{os.getpid()}")
    try:
        _write_text(tmp, text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _describe_os_error(err: OSError) -> str:
    if err.errno == errno.ENOSPC:
        return "no space left on device"
    return err.strerror or str(err)


def save(algo: Any, root: Path, config: dict[str, Any], state: CheckpointState, keep: int) -> Path:
    """Write ``algo`` plus config, state and manifest to ``root/iter_NNNNNN``; keep the newest
    ``keep`` (older ones are deleted only after the new one is in place).

    Returns the new checkpoint folder (absolute). Raises CheckpointError (one line, naming the
    checkpoint) when writing fails, e.g. on a full disk; nothing of the failed save is left and
    the previous checkpoints are untouched.
    """
    root = root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"iter_{state.iteration:06d}"
    partial = root / f".{final.name}{_PARTIAL}{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    try:
        partial.mkdir()
        algo.save_to_path(str(partial / ALGORITHM_DIR))
        _write_text(partial / CONFIG_FILE, yaml.safe_dump(config, sort_keys=False))
        _write_text(partial / STATE_FILE, json.dumps(asdict(state), indent=2))
        manifest = build_manifest(partial, config)
        _write_text(partial / MANIFEST_FILE, json.dumps(manifest, indent=1))
        if final.exists():  # re-saving the same iteration (e.g. periodic and final coincide)
            shutil.rmtree(final)
        os.rename(partial, final)
    except OSError as err:
        shutil.rmtree(partial, ignore_errors=True)
        previous = newest_name(root)
        kept = f"the newest kept checkpoint is {previous}" if previous else "no checkpoint kept"
        raise CheckpointError(
            f"checkpoint {final} not saved: {_describe_os_error(err)} ({err.filename or root}); "
            f"{kept}; free space or set checkpoint.keep lower"
        ) from err
    try:
        _replace_text(root / LATEST_FILE, final.name + "\n")
    except OSError as err:  # the checkpoint is complete; resuming a run folder does not need it
        log.warning("checkpoint %s saved, but %s not updated: %s", final, LATEST_FILE, err)
    _prune(root, final, keep)
    return final


def _prune(root: Path, final: Path, keep: int) -> None:
    """Delete all but the ``keep`` checkpoints saved last, never ``final`` (the one just saved).

    Newest means written last, not the highest iteration: a folder may still hold a higher
    ``iter_*`` of an earlier run under the same name (a rerun repro cell), and ordering by name
    deleted the new checkpoint instead of the stale one.
    """
    others = [p for p in root.glob("iter_*") if p.is_dir() and p != final]
    others.sort(key=lambda p: (p.stat().st_mtime_ns, p.name))
    for old in others[: max(len(others) - (keep - 1), 0)]:
        shutil.rmtree(old, ignore_errors=True)


def newest_name(root: Path) -> str | None:
    """Name of the newest ``iter_*`` folder under ``root`` (None when there is none)."""
    names = sorted(p.name for p in root.glob("iter_*") if p.is_dir())
    return names[-1] if names else None


# --- finding and verifying ----------------------------------------------------------------------
def find(path: str | Path) -> Path:
    """The checkpoint folder for ``path``: a checkpoint, its ``algorithm/``, or a run's root.

    A run's root (holding ``iter_*`` folders) resolves to its newest checkpoint (not verified:
    see :func:`find_verified`). Raises FileNotFoundError saying what was expected.
    """
    p = Path(path).expanduser().resolve()
    if (p / STATE_FILE).is_file():
        return p
    if p.name == ALGORITHM_DIR and (p.parent / STATE_FILE).is_file():
        return p.parent
    if (p / LATEST_FILE).is_file():
        latest = p / (p / LATEST_FILE).read_text().strip()
        if (latest / STATE_FILE).is_file():
            return latest
    candidates = [c for c in run_checkpoints(p) if (c / STATE_FILE).is_file()]
    if candidates:
        return candidates[-1]
    raise FileNotFoundError(
        f"no memrl checkpoint at {p}: expected a folder with {STATE_FILE} and {ALGORITHM_DIR}/ "
        f"(e.g. <output_dir>/checkpoints/<name>/iter_000010) or a run folder holding iter_*"
    )


def run_checkpoints(root: Path) -> list[Path]:
    """The ``iter_*`` folders of a run's root, oldest first (complete or not)."""
    return sorted(c for c in root.glob("iter_*") if c.is_dir())


def _short(digest: str) -> str:
    return digest[:12]


def verify(checkpoint: str | Path) -> dict[str, Any]:
    """Check a checkpoint folder against its manifest; returns the manifest.

    Reads no pickle. Raises CheckpointError (one line naming the checkpoint and the first file
    that differs: missing, another size, another SHA-256, not listed) for anything that does
    not match, for a manifest of another format (naming the memrl that wrote it), and for a
    checkpoint without manifest (written before memrl checkpoints had one).
    """
    folder = Path(checkpoint).expanduser().resolve()
    where = f"checkpoint {folder}"
    manifest_path = folder / MANIFEST_FILE
    if not folder.is_dir():
        raise CheckpointError(f"{where}: not a folder")
    if not manifest_path.is_file():
        raise CheckpointError(
            f"{where}: no {MANIFEST_FILE}; it was written by a memrl before checkpoint format 2 "
            f"(memrl 0.1.0 without manifests) or is incomplete; this memrl reads format "
            f"{FORMAT_VERSION} only: retrain, or train again from its config.yaml"
        )
    try:
        manifest = json.loads(manifest_path.read_text())
        files = manifest["files"]
        fmt = manifest["format"]
    except (ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"{where}: {MANIFEST_FILE} is not a memrl manifest ({err})") from err
    if fmt != FORMAT_VERSION:
        wrote = (manifest.get("versions") or {}).get("memrl", "unknown")
        raise CheckpointError(
            f"{where}: written by memrl {wrote} in checkpoint format {fmt}; this memrl "
            f"{_versions()['memrl']} reads format {FORMAT_VERSION} only"
        )
    present = {rel.as_posix() for rel in _files(folder)}
    for rel, expected in files.items():
        file = folder / rel
        if rel not in present:
            raise CheckpointError(f"{where}: {rel} is missing (listed in {MANIFEST_FILE})")
        size = file.stat().st_size
        if size != expected["size"]:
            raise CheckpointError(
                f"{where}: {rel} has {size} bytes, its manifest says {expected['size']} "
                "(truncated or replaced)"
            )
        digest = sha256_file(file)
        if digest != expected["sha256"]:
            raise CheckpointError(
                f"{where}: {rel} has SHA-256 {_short(digest)}..., its manifest says "
                f"{_short(expected['sha256'])}... (the file changed after it was written)"
            )
    extra = sorted(present - set(files))
    if extra:
        raise CheckpointError(
            f"{where}: {extra[0]} is not in its {MANIFEST_FILE} "
            f"({len(extra)} unlisted file(s); files from another checkpoint?)"
        )
    try:
        config = yaml.safe_load((folder / CONFIG_FILE).read_text())
    except (OSError, yaml.YAMLError) as err:
        raise CheckpointError(f"{where}: {CONFIG_FILE} cannot be read ({err})") from err
    if config_hash(config) != manifest.get("config_sha256"):
        raise CheckpointError(
            f"{where}: {CONFIG_FILE} does not hash to the manifest's config_sha256 "
            "(a manifest from another run?)"
        )
    return manifest


def find_verified(path: str | Path) -> Path:
    """:func:`find`, then :func:`verify`; a run's root resolves to its newest checkpoint that
    verifies, and each newer one skipped is logged (a warning) with the reason.

    Raises FileNotFoundError (no checkpoint at all) or CheckpointError (the checkpoint named, or
    every checkpoint of the run, fails verification).
    """
    p = Path(path).expanduser().resolve()
    named = find(p)  # FileNotFoundError when there is nothing
    if named == p or named == p.parent:  # a checkpoint (or its algorithm/) was named
        verify(named)
        return named
    skipped: list[str] = []
    for candidate in reversed(run_checkpoints(p)):
        try:
            verify(candidate)
        except CheckpointError as err:
            skipped.append(str(err))
            log.warning("skipping %s: %s", candidate.name, str(err).split(": ", 1)[-1])
            continue
        if skipped:
            log.warning(
                "using %s, the newest checkpoint of %s that verifies (%d newer skipped)",
                candidate.name, p, len(skipped),
            )  # fmt: skip
        return candidate
    raise CheckpointError(
        f"no checkpoint of {p} verifies ({len(skipped)} tried); newest: "
        + (skipped[0] if skipped else "none")
    )


def load_state(checkpoint: Path) -> CheckpointState:
    """The state.json of a checkpoint folder."""
    data = json.loads((checkpoint / STATE_FILE).read_text())
    return CheckpointState(**data)


def load_config_data(checkpoint: Path) -> dict[str, Any]:
    """The resolved config saved with a checkpoint, as plain data."""
    return yaml.safe_load((checkpoint / CONFIG_FILE).read_text())
