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

# The unprivileged user local steps run as when the task process is root (plugins/edgeops_airflow/runners/
# step_user.py). Its own group, never group 0. The interpreter may live under a 0700 home (/root/.pyenv): the
# step user gets search (x) on exactly the directories above it that it cannot cross, by ACL (package acl).
step_user() {
  [ "$(id -u)" = 0 ] || return 0
  local user=${EDGEOPS_STEP_USER:-edgeops-step} py dir
  id "$user" >/dev/null 2>&1 || useradd --system --user-group --create-home --home-dir "/var/lib/$user" \
    --shell /usr/sbin/nologin "$user"
  py=$(readlink -f .venv/bin/python)
  command -v setfacl >/dev/null 2>&1 || { apt-get install -y -q acl >/dev/null 2>&1 || true; }
  for dir in "$(dirname "$py")" "$(readlink -f .venv)" "$PWD"; do
    while [ "$dir" != / ]; do
      if ! runuser -u "$user" -- test -x "$dir"; then
        setfacl -m "u:$user:x" "$dir" || { echo "bootstrap: cannot let $user traverse $dir (install acl)" >&2; exit 1; }
      fi
      dir=$(dirname "$dir")
    done
  done
  runuser -u "$user" -- .venv/bin/python -c 'import tasks.cli' \
    || { echo "bootstrap: the step user $user cannot run .venv/bin/python -m tasks.cli" >&2; exit 1; }
}

want=$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)
stamp=.venv/.edgeops-installed
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then plugins_pth; step_user; exit 0; fi

echo "bootstrap: creating .venv with $PY (pip uses its cache; first install downloads ~2 GB)"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -c constraints.txt -e ".[airflow,dev]"
plugins_pth
step_user
echo "$want" > "$stamp"
echo "bootstrap: .venv ready"
