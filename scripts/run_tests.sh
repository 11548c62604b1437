#!/usr/bin/env bash
# Run pytest against the real services. Starts MinIO + the sshd devices unless they are already up (e.g.
# left running by `make demo`) and stops only what it started.
#   scripts/run_tests.sh [--with-containers] [pytest args...]
# --with-containers also starts the container devices (the emulated arm64 Pi); needs scripts/engine.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
up_args=(--no-airflow)
if [ "${1:-}" = "--with-containers" ]; then up_args+=(--with-containers); shift; fi
started=0
if ! $PY -m scripts.devstack status >/dev/null 2>&1; then
  $PY -m scripts.devstack up "${up_args[@]}"
  started=1
elif [ "${#up_args[@]}" -gt 1 ]; then
  $PY -m scripts.devstack up "${up_args[@]}"  # idempotent: adds what is missing
fi
cleanup() { if [ "$started" = 1 ]; then $PY -m scripts.devstack down; fi; }
trap cleanup EXIT
$PY -m pytest -q "$@"
