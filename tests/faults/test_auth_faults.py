"""Logins on: an anonymous caller of a real api-server (SimpleAuthManager, all_admins off, as the dev stack and
compose run it) gets 401 from Airflow's REST API and from the edgeops plugin's app, and changes nothing.

``data lost`` counts what the anonymous calls changed: DAG runs created, DAGs paused/unpaused or deleted (read
before and after with an admin's token).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration import airflow_ui as ui

pytestmark = pytest.mark.integration
NIGHTLY, ROLLOUT = "edgeops_nightly", "edgeops_rollout"
RUN = {"dag_run_id": "anonymous__x", "logical_date": None, "conf": {}}
# what an anonymous caller tries: read the DAGs, the Fleet page and a report; start a rollout; unpause and delete
ANONYMOUS = [
    ("GET", "/api/v2/dags", None),
    ("GET", "/edgeops/fleet", None),
    ("GET", "/edgeops/report/x", None),
    ("POST", f"/api/v2/dags/{ROLLOUT}/dagRuns", RUN),
    ("PATCH", f"/api/v2/dags/{NIGHTLY}", {"is_paused": False}),
    ("DELETE", f"/api/v2/dags/{NIGHTLY}", None),
]


@pytest.fixture(scope="module")
def api_server(tmp_path_factory, airflow_db, stack_env) -> Iterator[ui.AirflowServer]:
    from airflow.configuration import conf

    from tests.conftest import REPO, STATE_DIR

    # the DAGs in the metadata DB, so the anonymous writes aim at real ones (about 5 s)
    subprocess.run([str(Path(sys.executable).with_name("airflow")), "dags", "reserialize"], check=True,
                   capture_output=True, timeout=300,
                   env={**os.environ, "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
                        "AIRFLOW__CORE__LOAD_EXAMPLES": "False"})
    server, proc = ui.start(tmp_path_factory.mktemp("auth-faults"), conf.get("database", "sql_alchemy_conn"),
                            stack_env["connections"], STATE_DIR / "fleet.json")
    try:
        yield server
    finally:
        ui.stop(proc)


def call(url: str, method: str, body: Any = None, token: str | None = None) -> tuple[int, bytes]:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def snapshot(server: ui.AirflowServer) -> dict[str, Any]:
    """What an admin sees: every DAG with its paused flag, and how many DAG runs exist."""
    token = server.token()
    status, body = call(f"{server.url}/api/v2/dags?limit=500", "GET", token=token)
    assert status == 200, body
    dags = {d["dag_id"]: d["is_paused"] for d in json.loads(body)["dags"]}
    status, body = call(f"{server.url}/api/v2/dags/~/dagRuns?limit=1", "GET", token=token)
    assert status == 200, body
    return {"dags": dags, "runs": json.loads(body)["total_entries"]}


def test_an_anonymous_rest_call_is_refused_and_changes_nothing(api_server, figures) -> None:
    before = snapshot(api_server)
    codes = {f"{m} {p}": call(api_server.url + p, m, body)[0] for m, p, body in ANONYMOUS}
    after = snapshot(api_server)
    lost = sum(before["dags"].get(d) != after["dags"].get(d) for d in before["dags"] | after["dags"])
    lost += abs(after["runs"] - before["runs"])
    assert {NIGHTLY, ROLLOUT} <= set(before["dags"]), before
    passed = sum(code == 401 for code in codes.values())
    figures("an anonymous REST call (API and /edgeops app): 401", len(codes), passed, lost,
            f"{len(before['dags'])} DAGs, {before['runs']} runs unchanged" if not lost else "")
    assert codes == {k: 401 for k in codes}, codes
    assert lost == 0, (before, after)
    wrong = call(f"{api_server.url}/auth/token", "POST", {"username": ui.ADMIN, "password": "guess"})[0]
    assert wrong == 401  # a wrong password gets no token either
