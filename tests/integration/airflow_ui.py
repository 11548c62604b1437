"""An Airflow api-server with auth ON (SimpleAuthManager, real users and passwords, all_admins off) for the UI tests.

It runs in its own AIRFLOW_HOME on a free port, on the tests' metadata DB (where ``dag.test()`` left the runs),
with the plugins folder of this checkout: the edgeops plugin's extra links and Fleet app are what it serves.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import REPO
from tests.helpers import conn_env_var

ADMIN, VIEWER = "edgeops", "watcher"
# generated per test session, like the stacks' (nothing secret is committed, not even a test server's)
PASSWORDS = {ADMIN: secrets.token_urlsafe(12), VIEWER: secrets.token_urlsafe(12)}
SIMPLE_AUTH = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
START_TIMEOUT_S = 120


@dataclass(frozen=True)
class AirflowServer:
    url: str
    log: Path

    def token(self, user: str = ADMIN) -> str:
        """A JWT from the simple auth manager's ``POST /auth/token`` (what the CLI's trigger uses too)."""
        body = json.dumps({"username": user, "password": PASSWORDS[user]}).encode()
        req = urllib.request.Request(f"{self.url}/auth/token", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            return str(json.load(resp)["access_token"])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_env(home: Path, port: int, db_uri: str, connections: dict, fleet_file: Path) -> dict[str, str]:
    fd = os.open(home / "passwords.json", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(PASSWORDS, fh)
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update({
        "AIRFLOW_HOME": str(home), "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db_uri,
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"), "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "AIRFLOW__CORE__AUTH_MANAGER": SIMPLE_AUTH,
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN}:admin,{VIEWER}:viewer",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        "AIRFLOW__API__HOST": "127.0.0.1", "AIRFLOW__API__PORT": str(port), "AIRFLOW__API__BASE_URL": url,
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(48),
        "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(24), "AIRFLOW__API__WORKERS": "1",
        "EDGEOPS_FLEET": str(fleet_file), "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'plugins'}",
    })
    env.update({conn_env_var(c): json.dumps(v) for c, v in connections.items()})
    return env


def start(home: Path, db_uri: str, connections: dict, fleet_file: Path) -> tuple[AirflowServer, subprocess.Popen]:
    """``airflow api-server`` until its health endpoint answers; fails with its log when it does not."""
    port = free_port()
    env = server_env(home, port, db_uri, connections, fleet_file)
    log = home / "api-server.log"
    airflow = Path(sys.executable).with_name("airflow")
    with log.open("w") as out:
        proc = subprocess.Popen([str(airflow), "api-server"], env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    server = AirflowServer(env["AIRFLOW__API__BASE_URL"], log)
    deadline = time.time() + START_TIMEOUT_S
    while time.time() < deadline:
        if proc.poll() is not None:
            break
        try:
            with urllib.request.urlopen(f"{server.url}/api/v2/monitor/health", timeout=5):
                return server, proc
        except (urllib.error.URLError, OSError):
            time.sleep(1)
    stop(proc)
    raise RuntimeError(f"airflow api-server did not start on {server.url}:\n{log.read_text()[-3000:]}")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
