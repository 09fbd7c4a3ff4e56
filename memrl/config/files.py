"""Finding config files: the config folders and short names (``tmaze/arelit``)."""

from __future__ import annotations

import difflib
import os
from pathlib import Path

from memrl.config.errors import ConfigError


def config_dirs() -> list[Path]:
    """Where short names are looked up: $MEMRL_CONFIG_DIR, ./configs, the repository's configs/."""
    dirs = []
    if os.environ.get("MEMRL_CONFIG_DIR"):
        dirs.append(Path(os.environ["MEMRL_CONFIG_DIR"]))
    dirs.append(Path.cwd() / "configs")
    dirs.append(Path(__file__).resolve().parents[2] / "configs")
    unique: list[Path] = []
    for d in dirs:
        if d.is_dir() and d.resolve() not in [u.resolve() for u in unique]:
            unique.append(d)
    return unique


def list_configs() -> list[str]:
    """Short names of every shipped config (files starting with '_' are bases, not listed)."""
    names: set[str] = set()
    for root in config_dirs():
        for path in root.rglob("*.yaml"):
            # configs/tune/ holds search specs for `memrl tune`, not training configs.
            if not path.name.startswith("_") and path.relative_to(root).parts[0] != "tune":
                names.add(path.relative_to(root).with_suffix("").as_posix())
    return sorted(names)


def resolve_config_path(name: str | os.PathLike[str], relative_to: Path | None = None) -> Path:
    """The YAML file for a path or a short name (``tmaze/arelit``).

    Raises ConfigError listing close short names when nothing matches.
    """
    text = str(name)
    candidates = [Path(text).expanduser()]
    if relative_to is not None:
        candidates.insert(0, relative_to / text)
    for root in config_dirs():
        candidates.append(root / text)
        candidates.append(root / f"{text}.yaml")
    for path in candidates:
        if path.is_file():
            return path.resolve()
    known = list_configs()
    close = difflib.get_close_matches(text.removesuffix(".yaml"), known, n=5, cutoff=0.4)
    raise ConfigError(
        f"config {text!r} not found (looked in {[str(d) for d in config_dirs()]}); "
        f"closest: {close or 'none'}; all: {known}"
    )
