"""Paths, config and process helpers shared by the devstack components (stdlib and tasks.core.names only)."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from tasks.core import names

REPO = Path(__file__).resolve().parents[2]
# Which stack: the user's (.devstack/, config/stack.json) unless these name another one. `make test` runs its own
# (scripts/run_tests.sh: .devstack-test/, config/stack.test.json: other ports, its own MinIO data, device roots
# and Airflow DB), so tests never change what `make demo` left: its fleet, champions or runs list.
ENV_STATE_DIR, ENV_STACK_FILE = names.ENV_DEVSTACK_DIR, "EDGEOPS_STACK_FILE"
STATE = Path(os.environ.get(ENV_STATE_DIR) or REPO / ".devstack")
LOGS = STATE / "logs"
RUN = STATE / "run"
STACK_JSON = Path(os.environ.get(ENV_STACK_FILE) or REPO / "config" / "stack.json")
ENV_JSON = STATE / "env.json"


class DevstackError(Exception):
    """A failure with a message meant for the user (printed without a traceback)."""


def load_stack() -> dict:
    try:
        return json.loads(STACK_JSON.read_text())
    except (OSError, ValueError) as exc:
        raise DevstackError(f"cannot read {STACK_JSON}: {exc}") from exc


def with_minio_root(cfg: dict, state: Path | None = None) -> dict:
    """``cfg`` with ``minio.secret_key``: this stack's MinIO root password, from ``<state>/minio-root.secret``
    (0600). A new stack (no MinIO data yet) gets a generated one. A stack whose data was made with the password
    that config/stack*.json used to carry adopts it once, read from the stack file (an old copy still has it)
    or the stack's env.json (``s3_admin``), and says so; MinIO keeps the password it was created with."""
    state = STATE if state is None else state
    path, m = state / "minio-root.secret", cfg["minio"]
    if path.exists():
        return {**cfg, "minio": {**m, "secret_key": path.read_text().strip()}}
    if (state / "minio" / "data").exists():
        secret = m.get("secret_key") or _env_json_admin_secret(state / "env.json")
        if not secret:
            raise DevstackError(f"{state / 'minio' / 'data'} exists but its MinIO root password is unknown: "
                                f"write it to {path} (mode 0600), or wipe the stack's state dir {state}")
        print(f"devstack: adopted the existing MinIO data's root password into {path} (0600), read once from "
              f"{'the stack file' if m.get('secret_key') else state / 'env.json'}", file=sys.stderr)
    else:
        secret = secrets.token_urlsafe(24)
    write_private(path, secret + "\n")
    return {**cfg, "minio": {**m, "secret_key": secret}}


def _env_json_admin_secret(env_json: Path) -> str:
    try:
        return str(json.loads(env_json.read_text())["s3_admin"]["secret_key"])
    except (OSError, ValueError, KeyError, TypeError):
        return ""


def cache_dir() -> Path:
    return Path(os.environ.get("EDGEOPS_CACHE") or Path.home() / ".cache" / "edgeops")


def write_private(path: Path, text: str) -> None:
    """Write a file readable by the owner only (it may hold secrets)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    tmp.replace(path)


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log yet)"


# --- processes --------------------------------------------------------------------------------------------
def pidfile(name: str) -> Path:
    return RUN / f"{name}.pid"


def _start_time(pid: int) -> str | None:
    """Kernel start time of pid (field 22 of /proc/<pid>/stat); None if gone or a zombie."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()
    except OSError:
        return None
    return None if fields[0] == "Z" else fields[19]


def _alive(pid: int, started: str | None) -> bool:
    """True if pid runs and is the very process devstack started (same start time: not a recycled pid)."""
    now = _start_time(pid)
    return now is not None and (started is None or now == started)


def running(name: str) -> int | None:
    """The pid of component `name` if devstack started it and it still runs; stale pid files are removed."""
    path = pidfile(name)
    try:
        pid = int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    try:
        started = path.with_suffix(".start").read_text().strip() or None
    except OSError:
        started = None
    if _alive(pid, started):
        return pid
    path.unlink(missing_ok=True)
    path.with_suffix(".start").unlink(missing_ok=True)
    return None


def spawn(name: str, argv: list[str], log: Path, env: dict | None = None) -> subprocess.Popen:
    """Start a detached background process (own session = own process group) and record its pid."""
    LOGS.mkdir(parents=True, exist_ok=True)
    RUN.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        out.write(f"\n=== devstack {time.strftime('%Y-%m-%dT%H:%M:%S')} start: {' '.join(argv)}\n".encode())
        out.flush()
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=REPO,
            start_new_session=True,
        )
    pidfile(name).write_text(f"{proc.pid}\n")
    pidfile(name).with_suffix(".start").write_text(f"{_start_time(proc.pid) or ''}\n")
    return proc


def stop(name: str, timeout: float = 20.0) -> bool:
    """SIGTERM the process group devstack started for `name`, SIGKILL after timeout. False if not running."""
    pid = running(name)
    if pid is None:
        return False
    started = _start_time(pid)
    try:
        os.killpg(pid, signal.SIGTERM)  # spawn() made pid a session (and group) leader
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _alive(pid, started):
        time.sleep(0.2)
    if _alive(pid, started):
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    pidfile(name).unlink(missing_ok=True)
    pidfile(name).with_suffix(".start").unlink(missing_ok=True)
    return True


# --- network ----------------------------------------------------------------------------------------------
def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def ensure_port_free(host: str, port: int, what: str) -> None:
    if port_open(host, port):
        raise DevstackError(
            f"{what}: {host}:{port} is already in use by a process devstack did not start "
            f"(find it with: ss -ltnp 'sport = :{port}'); stop it or change the port in {STACK_JSON}"
        )


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def wait_for(
    check: Callable[[], bool], what: str, log: Path, timeout: float, proc: subprocess.Popen | None = None
) -> float:
    """Poll check() until true; fail clearly (naming the log) on timeout or if proc exits. Returns seconds."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():
            return time.monotonic() - start
        if proc is not None and proc.poll() is not None:
            raise DevstackError(
                f"{what}: process exited with code {proc.returncode} during startup; see {log}\n{tail(log)}"
            )
        time.sleep(0.3)
    raise DevstackError(f"{what}: not ready after {timeout:.0f}s; see {log}\n{tail(log)}")
