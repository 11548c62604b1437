#!/usr/bin/env bash
# Run pytest against the real services of the tests' OWN dev stack (.devstack-test/, config/stack.test.json:
# other ports, its own MinIO data, device roots and Airflow DB), never the one `make demo` left running, so a
# test run changes nothing of the user's fleet, champions or runs list. Starts it unless it is already up and
# stops only what it started.
#   scripts/run_tests.sh [--with-containers] [pytest args...]
# --with-containers also starts the container devices (the emulated arm64 Pi); needs scripts/engine.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
export EDGEOPS_DEVSTACK_DIR="${EDGEOPS_DEVSTACK_DIR:-$PWD/.devstack-test}"
export EDGEOPS_STACK_FILE="${EDGEOPS_STACK_FILE:-$PWD/config/stack.test.json}"
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
