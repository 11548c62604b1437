"""New images landing in MinIO start the nightly DAG: real Airflow processes (dag-processor, scheduler,
triggerer) on a temporary SQLite home, the real DAG file and plugin, the real MinIO notification stream.
Images uploaded while the triggerer is down make an event when it is back (the watermark in the asset state store).

The processes get no device connections and no api-server, so the run they create cannot deploy anything: it is
created (asset-triggered) and may then fail; the test only checks that it exists and came from ONE asset event.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tasks.core import names
from tests.helpers import conn_env_var
from tests.integration.minio_accounts import service_account

REPO = Path(__file__).resolve().parents[2]
DAG_ID = "edgeops_nightly"
COMPONENTS = (["dag-processor"], ["scheduler", "--skip-serve-logs"], ["triggerer", "--skip-serve-logs"])
BURST = 6


def airflow_env(home: Path, conn: dict, source: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_", "AIRFLOW__"))}
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "1",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        # no api-server: a task that starts cannot reach one (a closed port, never the shared stack's 8080)
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": "http://127.0.0.1:9/execution/",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
        "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "2",
        "PYTHONPATH": str(REPO),
        conn_env_var(names.MINIO_CONN_ID): json.dumps(conn),
        names.ENV_NEW_DATA_SOURCE: source,
        names.ENV_NEW_DATA_QUIET: "3",
        names.ENV_NEW_DATA_RESCAN: "2",
        "EDGEOPS_PROFILE": "tiny",
    })
    return env


def query(db: Path, sql: str) -> list[tuple]:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as con:
            return con.execute(sql).fetchall()
    except sqlite3.OperationalError:  # not migrated yet, or locked by a writer
        return []


def wait_for(what: str, check, timeout: float, logs: list[Path]):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(1)
    tails = "\n".join(f"--- {p.name}\n" + "\n".join(p.read_text(errors="replace").splitlines()[-25:]) for p in logs)
    pytest.fail(f"{what}: not after {timeout:.0f}s\n{tails}")


def start(airflow: str, args: list[str], env: dict, log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen(["nice", "-n", "15", airflow, *args], env=env, cwd=log.parent, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)


def upload(admin_s3, bucket: str, prefix: str, names_: list[str]) -> None:
    for name in names_:
        admin_s3.put_object(Bucket=bucket, Key=f"{prefix}{name}", Body=uuid.uuid4().bytes)


def stop_all(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + 20
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@pytest.mark.integration
def test_uploaded_images_start_an_asset_triggered_nightly_run(stack_env, admin_s3, tmp_path) -> None:
    bucket = stack_env["s3"]["datasets_bucket"]
    prefix = f"new-data-test-{uuid.uuid4().hex[:10]}/"
    airflow = str(Path(sys.executable).with_name("airflow"))
    home, db = tmp_path / "airflow", tmp_path / "airflow" / "airflow.db"
    home.mkdir()
    procs: list[subprocess.Popen] = []
    logs: list[Path] = []
    with service_account(stack_env, watched=(bucket,)) as conn:
        env = airflow_env(home, conn, f"s3://{bucket}/{prefix}")
        try:
            subprocess.run(["nice", "-n", "15", airflow, "db", "migrate"], env=env, check=True, cwd=tmp_path,
                           stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, timeout=240)
            for args in COMPONENTS:
                logs.append(tmp_path / f"{args[0]}.log")
                procs.append(start(airflow, args, env, logs[-1]))
            watching = f"watching s3://{bucket}/{prefix}"
            # the watcher is up once the triggerer runs it and it has listed the (empty) prefix
            wait_for("the triggerer running the dataset watcher",
                     lambda: watching in logs[2].read_text(errors="replace"), 120, logs)
            time.sleep(1)
            upload(admin_s3, bucket, prefix, [f"class_{i % 2}/{i}.png" for i in range(BURST)])

            runs = wait_for(
                "an asset-triggered edgeops_nightly run",
                lambda: query(db, f"SELECT run_id, run_type FROM dag_run WHERE dag_id = '{DAG_ID}'"), 60, logs)
            assert [run_type for _, run_type in runs] == ["asset_triggered"], runs
            events = query(db, "SELECT extra FROM asset_event")
            assert len(events) == 1, events  # the burst made ONE event
            payload = json.loads(events[0][0])["payload"]
            assert payload["objects"] == BURST and payload["prefix"] == prefix

            # images landing while the triggerer is down are reported when it is back
            stop_all([procs[2]])
            upload(admin_s3, bucket, prefix, ["class_0/late-a.png", "class_1/late-b.png"])
            seen = logs[2].read_text(errors="replace").count(watching)
            procs[2] = start(airflow, list(COMPONENTS[2]), env, logs[2])
            events = wait_for("the missed uploads reported after the triggerer restart",
                              lambda: (e := query(db, "SELECT extra FROM asset_event ORDER BY id")) and len(e) > 1
                              and e, 120, logs)
            assert logs[2].read_text(errors="replace").count(watching) > seen
            assert len(events) == 2 and json.loads(events[1][0])["payload"]["objects"] == 2, events
        finally:
            stop_all(procs)
            for obj in admin_s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", []):
                admin_s3.delete_object(Bucket=bucket, Key=obj["Key"])
