"""The Fleet app, mounted by the edgeops plugin at ``/edgeops`` in Airflow's api-server.

Plugin FastAPI apps are open unless their routes ask for Airflow's auth: every route here depends on
``requires_access_dag("GET")`` (the caller's Airflow login, from the UI's ``_token`` cookie or a bearer
token, and read access to DAGs), so an anonymous request gets 401 and a bad token 403.

* ``GET /edgeops/fleet``: the Fleet page (``tasks.fleet.page``), shown in the UI as an external view.
* ``GET /edgeops/object/<key>``: a redirect to a fresh presigned URL of one object of the artifacts bucket
  (a rollout's report, a device's state record): what the extra links point at.
* ``GET /edgeops/report/<run_id>``: the run's report as publish stored it, plus a "Rolled out" section from the
  rollout records that name the run (the Report link).
"""

from __future__ import annotations

from typing import Any

from airflow.api_fastapi.core_api.security import requires_access_dag
from fastapi import Depends, FastAPI, HTTPException
from fastapi.responses import HTMLResponse, RedirectResponse

from edgeops_airflow.ui.links import object_url
from tasks.core import keys
from tasks.core.names import ARTIFACTS_BUCKET, MINIO_CONN_ID

LINKED_PREFIXES = (keys.RUNS_PREFIX, keys.ROLLOUTS_PREFIX, keys.DEVICES_PREFIX)  # what /object may open
FLEET_PATH = "/fleet"

app = FastAPI(title="edgeops fleet", description="The edgeops Fleet page and links into the artifact store",
              dependencies=[Depends(requires_access_dag("GET"))])


def _store() -> Any:
    from edgeops_airflow.store import artifact_store

    return artifact_store(MINIO_CONN_ID, ARTIFACTS_BUCKET)


@app.get(FLEET_PATH, response_class=HTMLResponse)
def fleet() -> HTMLResponse:
    from tasks.core.exceptions import EdgeOpsError
    from tasks.fleet.inventory import load_inventory
    from tasks.fleet.page import fleet_page, render

    try:
        inventory = load_inventory()
    except EdgeOpsError as exc:
        raise HTTPException(status_code=500, detail=f"fleet inventory: {exc}") from exc
    return HTMLResponse(render(fleet_page(_store(), inventory), object_url))


@app.get("/report/{run_id}", response_class=HTMLResponse)
def run_report(run_id: str) -> HTMLResponse:
    from tasks.core.exceptions import ConfigError
    from tasks.fleet.history import recent_records
    from tasks.fleet.page import rolled_out_section

    try:
        safe = keys.safe_run_id(run_id) == run_id
    except ConfigError:
        safe = False
    store = _store()
    if not safe or not store.exists(keys.report(run_id)):
        raise HTTPException(status_code=404, detail=f"no report for run {run_id!r}")
    page = store.get_bytes(keys.report(run_id)).decode("utf-8")
    section = rolled_out_section(run_id, recent_records(store), object_url)
    head, tail = page.rsplit("</body>", 1) if "</body>" in page else (page, "")
    return HTMLResponse(f"{head}{section}</body>{tail}")


@app.get("/object/{key:path}")
def open_object(key: str) -> RedirectResponse:
    if ".." in key.split("/") or not key.startswith(LINKED_PREFIXES):
        raise HTTPException(status_code=404, detail=f"{key!r} is not a run, rollout or device object")
    store = _store()
    if not store.exists(key):
        raise HTTPException(status_code=404, detail=f"{store.uri(key)} does not exist (yet)")
    return RedirectResponse(store.presigned_url(key, expires_s=3600), status_code=307)
