"""Airflow 3 on SQLite + LocalExecutor: db migrate, connections import, api-server/scheduler/dag-processor and the
triggerer (it runs the nightly DAG's new-data watcher, plugins/edgeops_airflow/triggers.py)."""

from __future__ import annotations

import base64
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from tasks.core import names

from .common import (
    LOGS,
    REPO,
    STATE,
    DevstackError,
    ensure_port_free,
    http_ok,
    running,
    spawn,
    stop,
    tail,
    wait_for,
    write_private,
)

HOME = STATE / "airflow"
ENV_FILE = HOME / "airflow.env"
SECRETS = HOME / "secrets.json"
CONNECTIONS = HOME / "connections.json"
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
# Started only once the api-server answers its health check: a task the scheduler queues before that would
# reach a server still starting, time out and fail a night (issue 20: the 02:00 run lost at a 02:31 restart).
AFTER_API = ("scheduler", "triggerer")
SIMPLE_AUTH = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"


def url(cfg: dict) -> str:
    return f"http://{cfg['airflow']['host']}:{cfg['airflow']['port']}"


def health_url(cfg: dict) -> str:
    return url(cfg) + "/api/v2/monitor/health"


def airflow_bin() -> str:
    venv = Path(sys.executable).parent / "airflow"
    found = str(venv) if venv.exists() else shutil.which("airflow")
    if not found:
        raise DevstackError(
            f"`airflow` not found next to {sys.executable} nor on PATH: install the project venv"
        )
    return found


def _secrets() -> dict:
    """Fernet key + JWT/session secrets, generated once so connections stay decryptable across restarts."""
    if SECRETS.exists():
        return json.loads(SECRETS.read_text())
    values = {
        "fernet_key": base64.urlsafe_b64encode(os.urandom(32)).decode(),
        "jwt_secret": base64.urlsafe_b64encode(os.urandom(32)).decode(),
        "api_secret_key": base64.urlsafe_b64encode(os.urandom(32)).decode(),
    }
    write_private(SECRETS, json.dumps(values, indent=2) + "\n")
    return values


# The task -> api-server client (every task's supervisor talks to it for its state, XCom, connections). Defaults:
# 5 s timeout, 5 retries waiting 1..90 s (all over after ~31 s). On 2 cores the api-server shares the CPUs with a
# TensorFlow step and the scheduler; right after a restart it answers its first calls in 5-20 s, so the default
# timeout fails a task (httpx.ReadTimeout) that a patient client would have run. 30 s per call, 8 tries waiting
# 2..30 s rides out ~3 minutes of a busy or restarting api-server before the try fails (and is then retried).
EXECUTION_API_CLIENT = {
    "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "30",
    "AIRFLOW__WORKERS__EXECUTION_API_RETRIES": "8",
    "AIRFLOW__WORKERS__EXECUTION_API_RETRY_WAIT_MIN": "2",
    "AIRFLOW__WORKERS__EXECUTION_API_RETRY_WAIT_MAX": "30",
}


def settings(cfg: dict) -> dict[str, str]:
    """Everything Airflow needs, as environment variables (no airflow.cfg edits)."""
    a, s = cfg["airflow"], _secrets()
    return {
        "AIRFLOW_HOME": str(HOME),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{HOME / 'airflow.db'}",
        # Airflow 3 removed SequentialExecutor; LocalExecutor is what `airflow standalone` forces, and works
        # on SQLite. Keep parallelism low: SQLite has a single writer.
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "2",
        "AIRFLOW__CORE__AUTH_MANAGER": SIMPLE_AUTH,
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__API__HOST": a["host"],
        "AIRFLOW__API__PORT": str(a["port"]),
        "AIRFLOW__API__BASE_URL": url(cfg),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": url(cfg) + "/execution/",
        "AIRFLOW__CORE__FERNET_KEY": s["fernet_key"],
        "AIRFLOW__API_AUTH__JWT_SECRET": s["jwt_secret"],
        "AIRFLOW__API__SECRET_KEY": s["api_secret_key"],
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
        **EXECUTION_API_CLIENT,
        "PYTHONPATH": str(REPO),
        "EDGEOPS_REPO": str(REPO),
        names.ENV_FLEET: str(STATE / "fleet.json"),  # the running devices' inventory (`up` writes it)
    }


def child_env(cfg: dict) -> dict[str, str]:
    env = dict(os.environ)
    env.update(settings(cfg))
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return env


def write_env_file(cfg: dict) -> None:
    lines = ["# Airflow settings of the devstack (generated). Use: set -a; . " + str(ENV_FILE) + "; set +a"]
    lines += [f"export {k}={shlex.quote(v)}" for k, v in settings(cfg).items()]
    write_private(ENV_FILE, "\n".join(lines) + "\n")


def _run(args: list[str], env: dict, log: Path, what: str) -> None:
    with open(log, "ab") as out:
        rc = subprocess.run(
            [airflow_bin(), *args],
            env=env,
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        ).returncode
    if rc != 0:
        raise DevstackError(
            f"airflow: `airflow {' '.join(args)}` ({what}) failed with code {rc}; see {log}\n{tail(log)}"
        )


def _start(components: list[str], env: dict) -> dict[str, subprocess.Popen]:
    procs = {}
    for comp in components:
        pid = running(f"airflow-{comp}")
        if pid:
            print(f"airflow {comp}: already running (pid {pid})")
            continue
        # task logs are read from local files by the api-server: no need for the 0.0.0.0:8793 log server
        extra = ["--skip-serve-logs"] if comp in ("scheduler", "triggerer") else []
        log = LOGS / f"airflow-{comp}.log"
        procs[comp] = spawn(f"airflow-{comp}", [airflow_bin(), comp, *extra], log, env)
        print(f"airflow {comp}: started (pid {procs[comp].pid}), log {log}")
    return procs


def import_connections(cfg: dict, connections: dict) -> None:
    """Import (overwrite) connections into the running stack's Airflow (e.g. a rotated signing key)."""
    path = HOME / "connections-update.json"
    write_private(path, json.dumps(connections, indent=2) + "\n")
    try:
        _run(["connections", "import", "--overwrite", str(path)], child_env(cfg), LOGS / "airflow-setup.log",
             "connections import")
    finally:
        path.unlink(missing_ok=True)


def up(cfg: dict, connections: dict) -> None:
    HOME.mkdir(parents=True, exist_ok=True)
    LOGS.mkdir(parents=True, exist_ok=True)
    write_env_file(cfg)
    env = child_env(cfg)
    if not running("airflow-api-server"):
        ensure_port_free(cfg["airflow"]["host"], cfg["airflow"]["port"], "Airflow api-server")
    setup_log = LOGS / "airflow-setup.log"
    _run(["db", "migrate"], env, setup_log, "database migration")
    write_private(CONNECTIONS, json.dumps(connections, indent=2) + "\n")
    _run(["connections", "import", "--overwrite", str(CONNECTIONS)], env, setup_log, "connections import")
    _run(["pools", "set", names.DEVICE_POOL, str(names.DEFAULT_DEVICE_POOL_SLOTS),
          "rollout device tasks (deploy, benchmark, switch) in flight at once"], env, setup_log, "device pool")
    print(f"airflow: db migrated, {len(connections)} connections imported, pool {names.DEVICE_POOL} "
          f"({names.DEFAULT_DEVICE_POOL_SLOTS} slots) (log {setup_log})")
    procs = _start([c for c in COMPONENTS if c not in AFTER_API], env)
    took = wait_for(
        lambda: http_ok(health_url(cfg)),
        f"Airflow api-server at {health_url(cfg)}",
        LOGS / "airflow-api-server.log",
        180,
        procs.get("api-server"),
    )
    print(f"airflow: api-server healthy after {took:.1f}s; starting {', '.join(AFTER_API)}")
    procs.update(_start(list(AFTER_API), env))
    for comp, proc in procs.items():
        if proc.poll() is not None:
            raise DevstackError(
                f"airflow {comp} exited with code {proc.returncode}; see "
                f"{LOGS / f'airflow-{comp}.log'}\n{tail(LOGS / f'airflow-{comp}.log')}"
            )
    print(f"airflow: UI/API healthy at {url(cfg)}")


def down() -> None:
    for comp in reversed(COMPONENTS):
        stopped = stop(f"airflow-{comp}", timeout=30)
        print(f"airflow {comp}: {'stopped' if stopped else 'not running'}")


def status(cfg: dict) -> bool:
    healthy = http_ok(health_url(cfg))
    pids = {comp: running(f"airflow-{comp}") for comp in COMPONENTS}
    for comp, pid in pids.items():
        print(f"airflow {comp}: {f'up (pid {pid})' if pid else 'down'}")
    if any(pids.values()):
        print(f"  UI/API:  {url(cfg)}  ({'healthy' if healthy else 'NOT ANSWERING'})  env: {ENV_FILE}")
    return all(pids.values()) and healthy
