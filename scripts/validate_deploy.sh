#!/usr/bin/env bash
# Offline validation of docker/ and cluster/ (no Docker engine, cluster or network needed).
# Usage: scripts/validate_deploy.sh [PYTHON]   (default: .venv/bin/python)
# Prints one line per artefact and each problem found; exits 1 if any problem was found.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${1:-.venv/bin/python}"
exec "$PY" tests/deploy/deploy_validate.py
