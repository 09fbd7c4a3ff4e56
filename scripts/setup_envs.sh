#!/usr/bin/env bash
# Installs the optional environment packages into the venv whose python is $1.
# Placeholder until the environments issue lands: it installs nothing yet.
set -euo pipefail
PY=${1:-.venv/bin/python}
echo "setup-envs: nothing extra to install yet ($PY)"
