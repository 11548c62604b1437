"""A real Airflow (api-server, dag-processor, scheduler, triggerer; LocalExecutor on SQLite) in a temporary home on a
free port, started the way ``scripts/devstack/airflow.py`` starts it (the scheduler and triggerer only once the
api-server answers its health check; the same patient task -> API client), for tests that need the scheduler
itself: scheduled runs, retries, ``max_active_runs``, deadlines.

Every process runs in a session of its own; ``stop`` ends those sessions and then any process still carrying this
home in its environment (a step's subprocess that left the session), each by its pid.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from scripts.devstack import airflow as devstack_airflow
from tests.conftest import REPO
from tests.helpers import conn_env_var
from tests.integration.airflow_ui import free_port

AIRFLOW = str(Path(sys.executable).with_name("airflow"))
SIMPLE_AUTH = devstack_airflow.SIMPLE_AUTH


@dataclass
class SchedulerStack:
    home: Path
    env: dict[str, str]
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def db(self) -> Path:
        return self.home / "airflow.db"

    @property
    def url(self) -> str:
        return self.env["AIRFLOW__API__BASE_URL"]

    def log(self, component: str) -> Path:
        return self.home / f"{component}.log"

    def query(self, sql: str, args: tuple = ()) -> list[tuple]:
        """Rows from the metadata DB, read-only; [] while it is locked by a writer."""
        try:
            with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=5) as con:
                return con.execute(sql, args).fetchall()
        except sqlite3.OperationalError:
            return []

    def wait(self, what: str, check: Callable[[], Any], timeout: float, every: float = 2.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if result := check():
                return result
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    pytest.fail(f"airflow {name} exited with {proc.returncode} while waiting for {what}\n"
                                + self.tails())
            time.sleep(every)
        pytest.fail(f"{what}: not after {timeout:.0f}s\n{self.tails()}")

    def tails(self, lines: int = 30) -> str:
        out = []
        for path in sorted(self.home.glob("*.log")):
            out.append(f"--- {path.name}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-lines:]))
        return "\n".join(out)


def stack_env(home: Path, connections: dict[str, Any], extra: dict[str, str]) -> dict[str, str]:
    """The devstack's settings for this home and port: no airflow.cfg, everything as environment."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "2",
        "AIRFLOW__CORE__AUTH_MANAGER": SIMPLE_AUTH,
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",  # logins on, as every stack (only health is read)
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": url,
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": url + "/execution/",
        "AIRFLOW__API_AUTH__JWT_SECRET": "edgeops-scheduler-test-jwt-secret-" + "0123456789abcdef" * 3,
        "AIRFLOW__API__SECRET_KEY": "edgeops-scheduler-test-secret",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
        "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "2",
        **devstack_airflow.EXECUTION_API_CLIENT,
        "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'plugins'}",
        "EDGEOPS_REPO": str(REPO),
    })
    env.update({conn_env_var(c): json.dumps(v) if isinstance(v, dict) else v for c, v in connections.items()})
    env.update(extra)
    return env


def _spawn(stack: SchedulerStack, component: str) -> None:
    extra = ["--skip-serve-logs"] if component in ("scheduler", "triggerer") else []
    with open(stack.log(component), "ab") as out:
        stack.procs[component] = subprocess.Popen(
            ["nice", "-n", "10", AIRFLOW, component, *extra], env=stack.env, cwd=stack.home, stdout=out,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/api/v2/monitor/health", timeout=3) as resp:
            return resp.status == 200
    except OSError:
        return False


def migrate(stack: SchedulerStack) -> None:
    subprocess.run([AIRFLOW, "db", "migrate"], env=stack.env, cwd=stack.home, check=True, timeout=300,
                   stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)


def seed_scheduled_run(stack: SchedulerStack, dag_id: str, tick: str) -> None:
    """A successful scheduled run at ``tick`` (ISO, UTC), as if the stack had run that night before it went down:
    the scheduler's next run is computed from the newest such run."""
    code = textwrap.dedent(f"""
        from datetime import datetime, timedelta
        from airflow.models.dagrun import DagRun
        from airflow.utils.session import create_session
        from airflow.utils.state import DagRunState
        from airflow.utils.types import DagRunTriggeredByType, DagRunType

        tick = datetime.fromisoformat({tick!r})
        with create_session() as session:
            run = DagRun(
                dag_id={dag_id!r}, run_id=DagRun.generate_run_id(
                    run_type=DagRunType.SCHEDULED, logical_date=tick, run_after=tick),
                logical_date=tick, run_after=tick, data_interval=(tick, tick), queued_at=tick, start_date=tick,
                state=DagRunState.SUCCESS, run_type=DagRunType.SCHEDULED,
                triggered_by=DagRunTriggeredByType.TIMETABLE)
            run.end_date = tick + timedelta(minutes=1)
            session.add(run)
    """)
    subprocess.run([sys.executable, "-c", code], env=stack.env, cwd=stack.home, check=True, timeout=120,
                   capture_output=True)


def start(stack: SchedulerStack, timeout: float = 240) -> float:
    """api-server and dag-processor, then (once the api-server is healthy) scheduler and triggerer: seconds the
    api-server took."""
    began = time.monotonic()
    for component in devstack_airflow.COMPONENTS:
        if component not in devstack_airflow.AFTER_API:
            _spawn(stack, component)
    stack.wait("the api-server's health check", lambda: _healthy(stack.url), timeout)
    took = time.monotonic() - began
    for component in devstack_airflow.AFTER_API:
        _spawn(stack, component)
    return took


def _pids_with_home(home: Path) -> list[int]:
    """Our processes still carrying AIRFLOW_HOME=<home> (e.g. a step subprocess in a session of its own)."""
    marker = f"AIRFLOW_HOME={home}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def stop(stack: SchedulerStack, timeout: float = 30) -> list[int]:
    """SIGTERM every component's session, SIGKILL what is left; returns the pids that needed the kill."""
    for proc in stack.procs.values():
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for proc in stack.procs.values():
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    leftovers = _pids_with_home(stack.home)
    for pid in leftovers:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return leftovers
