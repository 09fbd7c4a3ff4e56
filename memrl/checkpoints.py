"""The on-disk layout of a run's checkpoints, and finding one to resume or evaluate.

``<output_dir>/checkpoints/<name>/``
    ``iter_000010/algorithm/``   RLlib ``Algorithm.save_to_path`` (weights, optimizer, connectors)
    ``iter_000010/config.yaml``  the resolved config (loads with memrl.config, no ``base``)
    ``iter_000010/state.json``   ``{"iteration", "env_steps", "time_s", "name"}``
    ``latest``                   the name of the newest ``iter_*`` folder
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

ALGORITHM_DIR = "algorithm"
CONFIG_FILE = "config.yaml"
STATE_FILE = "state.json"
LATEST_FILE = "latest"


@dataclass(frozen=True)
class CheckpointState:
    """Where training stood when a checkpoint was written."""

    iteration: int
    env_steps: int
    time_s: float
    name: str


def save(algo: Any, root: Path, config: dict[str, Any], state: CheckpointState, keep: int) -> Path:
    """Write ``algo`` plus config and state to ``root/iter_NNNNNN``; keep the newest ``keep``.

    Returns the new checkpoint folder (absolute).
    """
    root = root.resolve()
    path = root / f"iter_{state.iteration:06d}"
    if path.exists():  # re-saving the same iteration (e.g. periodic and final coincide)
        shutil.rmtree(path)
    path.mkdir(parents=True)
    algo.save_to_path(str(path / ALGORITHM_DIR))
    (path / CONFIG_FILE).write_text(yaml.safe_dump(config, sort_keys=False))
    (path / STATE_FILE).write_text(json.dumps(asdict(state), indent=2))
    (root / LATEST_FILE).write_text(path.name + "\n")
    for old in sorted(root.glob("iter_*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return path


def find(path: str | Path) -> Path:
    """The checkpoint folder for ``path``: a checkpoint, its ``algorithm/``, or a run's root.

    A run's root (holding ``iter_*`` folders) resolves to its newest checkpoint.
    Raises FileNotFoundError saying what was expected.
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
    candidates = sorted(c for c in p.glob("iter_*") if (c / STATE_FILE).is_file())
    if candidates:
        return candidates[-1]
    raise FileNotFoundError(
        f"no memrl checkpoint at {p}: expected a folder with {STATE_FILE} and {ALGORITHM_DIR}/ "
        f"(e.g. <output_dir>/checkpoints/<name>/iter_000010) or a run folder holding iter_*"
    )


def load_state(checkpoint: Path) -> CheckpointState:
    """The state.json of a checkpoint folder."""
    data = json.loads((checkpoint / STATE_FILE).read_text())
    return CheckpointState(**data)


def load_config_data(checkpoint: Path) -> dict[str, Any]:
    """The resolved config saved with a checkpoint, as plain data."""
    return yaml.safe_load((checkpoint / CONFIG_FILE).read_text())
