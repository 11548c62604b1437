"""Killing a Celery worker container mid-task on the compose stack: the task is retried on the other worker and
the run still succeeds (`make test-compose`, marker ``compose``).

What brings the task back (Airflow 3.3 + Celery, read in Airflow's sources): the dead worker's task supervisor
stops heartbeating; after ``[scheduler] task_instance_heartbeat_timeout`` (60 s on compose, default 300 s) the
scheduler fails that try (``_find_task_instances_without_heartbeats``), which with retries left (the DAG's
default_args: 2, retry_delay 20 s) goes up_for_retry and is queued again for a live worker. Celery does not
redeliver it: ``task_acks_late`` leaves the message unacked in Redis until the 24 h visibility timeout.

The killed container is started again at the end (``docker kill`` is a manual stop: ``restart: always`` does
not bring it back by itself), and the test waits for it to be healthy.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.parse
from typing import Any

import pytest

from scripts.compose import demo
from tests.containers.test_compose_stack import NIGHTLY, task_instances, trigger

pytestmark = pytest.mark.compose
TASK = "train"
EPOCHS = 60  # tiny: 20 epochs take ~14 s on a warm worker; 60 keeps train running long enough to kill it
RETRY_WITHIN_S = 240  # heartbeat timeout 60 s + detection 10 s + retry_delay 20 s, with room for a loaded host


def _docker(*args: str, check: bool = True) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check, timeout=120).stdout.strip()


def workers() -> dict[str, str]:
    """hostname Airflow records (the container's short id) -> container name, for the airflow-worker service."""
    out = _docker("ps", "--filter", "label=com.docker.compose.project=edgeops",
                  "--filter", "label=com.docker.compose.service=airflow-worker", "--format", "{{.ID}} {{.Names}}")
    return dict(line.split(maxsplit=1) for line in out.splitlines())


def _host(ti: dict[str, Any]) -> str:
    return (ti.get("hostname") or "").split(".")[0]


def _task(run_id: str) -> dict[str, Any]:
    return next(t for t in task_instances(NIGHTLY, run_id) if t["task_id"] == TASK)


def _tries(run_id: str) -> list[dict[str, Any]]:
    path = f"/dags/{NIGHTLY}/dagRuns/{urllib.parse.quote(run_id)}/taskInstances/{TASK}/tries"
    return demo.api("GET", path)["task_instances"]


def _wait_healthy(container: str, timeout_s: int = 300) -> str:
    deadline, health = time.time() + timeout_s, ""
    while time.time() < deadline:
        health = _docker("inspect", "-f", "{{.State.Status}}/{{if .State.Health}}{{.State.Health.Status}}{{end}}",
                         container, check=False)
        if health.endswith("/healthy"):
            return health
        time.sleep(5)
    return health


def test_killed_worker_task_is_retried_on_the_other_worker():
    before = workers()
    assert len(before) >= 2, f"need 2 running workers, found {before}; run: make compose-up"
    run_id = trigger({"profile": "tiny", "task_runner": "local", "devices": ["pi1"], "epochs": EPOCHS},
                     prefix="ckill")
    victim = name = ""
    try:
        deadline = time.time() + 600
        while time.time() < deadline:
            ti = _task(run_id)
            if ti["state"] == "running" and _host(ti) in before:
                time.sleep(3)  # mid-task: the step's subprocess has started on that worker
                victim, name = _host(ti), before[_host(ti)]
                break
            assert ti["state"] in (None, "scheduled", "queued", "running"), f"{TASK} is {ti['state']} before the kill"
            time.sleep(1)
        assert victim, f"{TASK} of {run_id} never ran on a compose worker within 600 s"
        _docker("kill", name)
        killed_at = time.time()
        assert _docker("inspect", "-f", "{{.State.Running}}", name) == "false"
        print(f"killed {name} (hostname {victim}) while {TASK} of {run_id} ran on it", flush=True)

        retried = None
        while time.time() - killed_at < RETRY_WITHIN_S and retried is None:
            ti = _task(run_id)
            if ti["try_number"] >= 2 and ti["state"] in ("running", "success"):
                retried = time.time() - killed_at
            time.sleep(2)
        assert retried is not None, f"{TASK} not retried within {RETRY_WITHIN_S}s of the kill: {json.dumps(ti)}"
        print(f"{TASK} try {ti['try_number']} started {retried:.0f}s after the kill on {_host(ti)}", flush=True)

        state = demo.wait_for_run(run_id)
        final, tries = _task(run_id), _tries(run_id)
        assert state == "success", json.dumps([(t["task_id"], t["state"]) for t in task_instances(NIGHTLY, run_id)])
        assert final["state"] == "success" and final["try_number"] >= 2
        assert _host(final) != victim and _host(final) in before, (final["hostname"], victim)
        first = next(t for t in tries if t["try_number"] == 1)
        assert _host(first) == victim and first["state"] in ("failed", "up_for_retry"), first
        print(f"run {run_id} succeeded {time.time() - killed_at:.0f}s after the kill; {TASK} finished on "
              f"{before[_host(final)]}", flush=True)
    finally:
        health = ""
        if name:
            _docker("start", name, check=False)
            health = _wait_healthy(name)
            print(f"restarted {name}: {health}", flush=True)
    assert health.endswith("/healthy"), f"{name} after restart: {health}"
