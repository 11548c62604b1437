"""`make compose-demo`: one run of the nightly DAG on the compose stack, through Airflow's REST API, then the
rollout its blessed model starts.

Triggers a run (profile ``demo`` unless EDGEOPS_COMPOSE_PROFILE says otherwise), waits for it, prints the
same summary as `make demo` (computed inside a worker, with the pipeline's connection) and, per task
instance, ``hostname=<worker>``: the Celery worker that ran it; then follows the ``edgeops_rollout`` run the
asset event started (canary, later waves) and prints its worker per task too. Exit 1 when the run fails, 3 when its task
instances did not spread over at least EDGEOPS_COMPOSE_MIN_WORKERS workers (default 2).
Stdlib only: it needs no .venv on the host. Logs in as ``admin`` with the password in .env (or
``$EDGEOPS_AIRFLOW_PASSWORD``): ``POST /auth/token``, then a Bearer token on every call.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # run as `python3 scripts/compose/demo.py`
    sys.path.insert(0, str(REPO))

from scripts.compose import dotenv  # noqa: E402

DAG_ID = "edgeops_nightly"
ROLLOUT_DAG_ID = "edgeops_rollout"
API = os.environ.get("EDGEOPS_COMPOSE_API", f"http://127.0.0.1:{os.environ.get('EDGEOPS_AIRFLOW_PORT', '18080')}")
TIMEOUT_S = int(os.environ.get("EDGEOPS_DEMO_TIMEOUT", "1800"))


_TOKEN: list[str] = []  # the one JWT of this process, fetched on first use


def token() -> str:
    """A JWT for ``admin`` (Airflow 3: ``POST /auth/token``), fetched once."""
    if not _TOKEN:
        body = {"username": dotenv.ADMIN, "password": dotenv.value(dotenv.AIRFLOW_PASSWORD)}
        _TOKEN.append(str(_call("POST", API + "/auth/token", body, {})["access_token"]))
    return _TOKEN[0]


def api(method: str, path: str, body: dict | None = None) -> dict:
    return _call(method, API + "/api/v2" + path, body, {"Authorization": f"Bearer {token()}"})


def _call(method: str, url: str, body: dict | None, headers: dict[str, str]) -> dict:
    path = url.removeprefix(API)
    req = urllib.request.Request(url, method=method, data=None if body is None else json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json", "Accept": "application/json",
                                          **headers})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        raise SystemExit(f"compose-demo: {method} {path}: HTTP {exc.code}: {exc.read()[:500]!r}") from exc
    except OSError as exc:
        raise SystemExit(f"compose-demo: Airflow's API at {API} does not answer ({exc}); "
                         "start the stack: make compose-up") from exc


def wait_for_dag() -> None:
    deadline = time.time() + 300
    while time.time() < deadline:
        errors = api("GET", "/importErrors").get("import_errors", [])
        if errors:
            raise SystemExit(f"compose-demo: the DAG folder has import errors:\n{json.dumps(errors, indent=2)}")
        dags = api("GET", f"/dags?dag_id_pattern={DAG_ID}").get("dags", [])
        if any(d["dag_id"] == DAG_ID for d in dags):
            return
        time.sleep(5)
    raise SystemExit(f"compose-demo: {DAG_ID} not parsed after 300 s; see `docker compose logs airflow-dag-processor`")


def _ti_name(ti: dict) -> str:
    return ti["task_id"] + ("" if ti.get("map_index", -1) in (-1, None) else f"[{ti['map_index']}]")


def task_instances(run_id: str, dag_id: str = DAG_ID) -> list[dict]:
    return api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances?limit=100").get("task_instances", [])


def rollout_for(run_id: str, timeout_s: int = 300) -> str:
    """The edgeops_rollout run started by the blessed-model asset event of nightly run ``run_id``."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        for run in api("GET", f"/dags/{ROLLOUT_DAG_ID}/dagRuns?order_by=-start_date&limit=20").get("dag_runs", []):
            events = api("GET", f"/dags/{ROLLOUT_DAG_ID}/dagRuns/{run['dag_run_id']}/upstreamAssetEvents")
            if any(run_id in str((e.get("extra") or {}).get("run_id", "")) for e in events.get("asset_events", [])):
                return run["dag_run_id"]
        time.sleep(10)
    raise SystemExit(f"compose-demo: no {ROLLOUT_DAG_ID} run for {run_id} within {timeout_s}s")


def wait_for_run(run_id: str, dag_id: str = DAG_ID) -> str:
    start, last = time.time(), ""
    while time.time() - start < TIMEOUT_S:
        summary = ", ".join(f"{_ti_name(t)}={t['state']}" for t in task_instances(run_id, dag_id))
        if summary != last:
            print(f"[{time.time() - start:5.0f}s] {summary}", flush=True)
            last = summary
        state = api("GET", f"/dags/{dag_id}/dagRuns/{run_id}")["state"]
        if state in ("success", "failed"):
            return state
        time.sleep(10)
    raise SystemExit(f"compose-demo: run {run_id} still running after {TIMEOUT_S}s; it continues in Airflow")


def container_names() -> dict[str, str]:
    """hostname (the container id Airflow records) -> compose container name, for readable output."""
    out = subprocess.run(["docker", "ps", "--filter", "label=com.docker.compose.project=edgeops",
                          "--format", "{{.ID}} {{.Names}}"], capture_output=True, text=True).stdout
    return dict(line.split(maxsplit=1) for line in out.splitlines() if " " in line)


def print_hosts(run_id: str, dag_id: str = DAG_ID) -> set[str]:
    names, hosts = container_names(), set()
    print(f"\n{'task':<28}{'state':<10}{'try':>4}  worker")
    for ti in sorted(task_instances(run_id, dag_id), key=lambda t: (t.get("start_date") or "", _ti_name(t))):
        host = ti.get("hostname") or ""
        if host:
            hosts.add(host)
        label = f"hostname={host}" + (f" ({names[host]})" if host in names else "")
        print(f"{_ti_name(ti):<28}{ti['state'] or '-':<10}{ti.get('try_number', 0):>4}  {label}")
    print(f"task instances ran on {len(hosts)} worker(s): {', '.join(sorted(hosts))}")
    return hosts


def in_worker(*args: str) -> None:
    """`python -m scripts.compose <args>` inside a worker (it has the pipeline's connection and TensorFlow)."""
    subprocess.run(["docker", "compose", "exec", "-T", "airflow-worker", "python", "-m", "scripts.compose", *args],
                   cwd=REPO, check=True)


def main() -> int:
    in_worker("seed")
    wait_for_dag()
    for dag_id in (DAG_ID, ROLLOUT_DAG_ID):
        api("PATCH", f"/dags/{dag_id}", {"is_paused": False})
    run_id = "compose__" + dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    conf = {"profile": os.environ.get("EDGEOPS_COMPOSE_PROFILE", "demo"), "task_runner": "local"}
    api("POST", f"/dags/{DAG_ID}/dagRuns", {"dag_run_id": run_id, "logical_date": None, "conf": conf})
    print(f"compose-demo: triggered {run_id} with {json.dumps(conf)}; UI {API}/dags/{DAG_ID}", flush=True)
    state = wait_for_run(run_id)
    hosts = print_hosts(run_id)
    if state != "success":
        print(f"compose-demo: run {run_id} {state}; see the UI or `docker compose logs airflow-worker`",
              file=sys.stderr)
        return 1
    in_worker("summary", run_id)
    rollout = rollout_for(run_id)
    print(f"\ncompose-demo: the blessed model started {ROLLOUT_DAG_ID} run {rollout}", flush=True)
    rollout_state = wait_for_run(rollout, ROLLOUT_DAG_ID)
    print_hosts(rollout, ROLLOUT_DAG_ID)
    if rollout_state == "success":
        in_worker("rollout", rollout)
    print(f"\nAirflow UI     {API}/dags/{DAG_ID}/runs/{run_id}")
    print(f"Rollout        {API}/dags/{ROLLOUT_DAG_ID}/runs/{rollout} ({rollout_state})")
    print(f"MinIO console  http://127.0.0.1:{os.environ.get('EDGEOPS_MINIO_CONSOLE_PORT', '19001')}/browser/artifacts")
    print("Stop           make compose-down   (volumes stay; `docker compose down -v` wipes them)")
    if rollout_state != "success":
        print(f"compose-demo: rollout {rollout} {rollout_state}; see its record task log", file=sys.stderr)
        return 1
    need = int(os.environ.get("EDGEOPS_COMPOSE_MIN_WORKERS", "2"))
    if len(hosts) < need:
        print(f"compose-demo: the run used {len(hosts)} worker(s), expected at least {need}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
