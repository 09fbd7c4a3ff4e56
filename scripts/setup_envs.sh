#!/usr/bin/env bash
# Installs the optional environment packages into the venv whose python is $1 (idempotent).
#
#   bash scripts/setup_envs.sh .venv/bin/python
#
# - memory-gym 1.0.2 with --no-deps (its wheel pins gymnasium 0.29 and pygame 2.4; it runs
#   unchanged on gymnasium 1.x) plus pygame-ce. pygame and pygame-ce both install the module
#   `pygame`, so a plain pygame is removed first.
# - memory-maze 1.0.3 with dm-control 1.0.50 and mujoco 3.17.0 in ONE pip command (without the
#   pin pip takes mujoco 4, which breaks dm_control 1.0.50; swapping mujoco afterwards can leave
#   broken shared files).
# - headless GL for MuJoCo (EGL, OSMesa) from apt when running as root; otherwise it says which
#   packages are missing and carries on.
# Set MEMRL_SKIP_APT=1 to never touch apt.
set -euo pipefail

PY=${1:-.venv/bin/python}
if [ ! -x "$PY" ]; then
    echo "setup-envs: $PY is not an executable python (pass the venv's python)" >&2
    exit 2
fi
PIP=("$PY" -m pip install -q --disable-pip-version-check)
start=$(date +%s)

# --- headless GL (apt) -------------------------------------------------------------------------
GL_PKGS=(libegl1 libegl-mesa0 libgl1-mesa-dri libgbm1 libosmesa6)
missing=()
if command -v dpkg-query >/dev/null 2>&1; then
    for pkg in "${GL_PKGS[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
            || missing+=("$pkg")
    done
fi
if [ ${#missing[@]} -eq 0 ]; then
    echo "setup-envs: headless GL packages present"
elif [ "${MEMRL_SKIP_APT:-0}" = 1 ]; then
    echo "setup-envs: MEMRL_SKIP_APT=1, not installing ${missing[*]}"
elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup-envs: apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
    echo "setup-envs: not root (or no apt-get): skipping apt; Memory Maze rendering needs" \
         "${missing[*]} (sudo apt-get install -y ${missing[*]})"
fi

# --- Python packages ---------------------------------------------------------------------------
# Exit 0 when every "dist==version" given is installed (so a rerun does nothing).
have() {
    "$PY" - "$@" <<'EOF'
import sys
from importlib.metadata import PackageNotFoundError, version

for spec in sys.argv[1:]:
    name, _, want = spec.partition("==")
    try:
        got = version(name)
    except PackageNotFoundError:
        sys.exit(1)
    if want and got != want:
        sys.exit(1)
EOF
}

if have pygame && ! have pygame-ce; then
    echo "setup-envs: removing pygame (pygame-ce replaces it; both install the module 'pygame')"
    "$PY" -m pip uninstall -y -q pygame
fi
if have memory-gym==1.0.2 pygame-ce; then
    echo "setup-envs: memory-gym already installed"
else
    echo "setup-envs: installing memory-gym (--no-deps) and pygame-ce"
    "${PIP[@]}" "pygame-ce>=2.5"
    "${PIP[@]}" --no-deps memory-gym==1.0.2
fi

if have memory-maze==1.0.3 dm-control==1.0.50 mujoco==3.17.0 labmaze; then
    echo "setup-envs: memory-maze already installed"
else
    echo "setup-envs: installing memory-maze, dm-control==1.0.50, mujoco==3.17.0"
    "${PIP[@]}" memory-maze==1.0.3 dm-control==1.0.50 mujoco==3.17.0 "labmaze>=1.0.6"
fi

# --- smoke check: imports only (building a maze takes seconds; the tests do that) ---------------
SDL_VIDEODRIVER=dummy SDL_AUDIODRIVER=dummy PYGAME_HIDE_SUPPORT_PROMPT=1 "$PY" - <<'EOF'
import importlib.util

import mujoco
import pygame

assert mujoco.__version__ == "3.17.0", mujoco.__version__
assert getattr(pygame, "IS_CE", False), "pygame is not pygame-ce"
for module in ("memory_gym", "dm_control", "labmaze", "memory_maze"):
    assert importlib.util.find_spec(module), f"{module} did not install"
EOF
echo "setup-envs: done in $(( $(date +%s) - start )) s"
