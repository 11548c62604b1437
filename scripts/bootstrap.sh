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

# plugins/ on the venv's path, so `lint-imports`, a REPL or a script finds edgeops_airflow as Airflow does
plugins_pth() { printf '%s\n' "$PWD/plugins" > "$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/edgeops-plugins.pth"; }

want=$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)
stamp=.venv/.edgeops-installed
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then plugins_pth; exit 0; fi

echo "bootstrap: creating .venv with $PY (pip uses its cache; first install downloads ~2 GB)"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -c constraints.txt -e ".[airflow,dev]"
plugins_pth
echo "$want" > "$stamp"
echo "bootstrap: .venv ready"
