#!/usr/bin/env bash
# Create .venv and install the project with pinned versions (constraints.txt). Idempotent: a stamp file
# keyed on pyproject.toml + constraints.txt skips the work when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-}
if [ -z "$PY" ]; then
  for cand in python3.11 /usr/bin/python3.11 "$HOME/.pyenv/versions/3.11*/bin/python3.11"; do
    for p in $cand; do command -v "$p" >/dev/null 2>&1 && { PY=$p; break 2; }; done
  done
fi
[ -n "$PY" ] || { echo "bootstrap: Python 3.11 not found; install python3.11 (apt-get install python3.11-venv)" >&2; exit 1; }

want=$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)
stamp=.venv/.edgeops-installed
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then exit 0; fi

echo "bootstrap: creating .venv with $PY (pip uses its cache; first install downloads ~2 GB)"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -c constraints.txt -e ".[airflow,dev]"
echo "$want" > "$stamp"
echo "bootstrap: .venv ready"
