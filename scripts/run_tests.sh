#!/usr/bin/env bash
# Run the whole suite against the real services. Starts MinIO + the sshd devices unless they are already
# up (e.g. left running by `make demo`), and stops only what it started.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
started=0
if ! $PY -m scripts.devstack status >/dev/null 2>&1; then
  $PY -m scripts.devstack up --no-airflow
  started=1
fi
cleanup() { if [ "$started" = 1 ]; then $PY -m scripts.devstack down; fi; }
trap cleanup EXIT
$PY -m pytest -q "$@"
