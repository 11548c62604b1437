"""The edgeops plugin in a real api-server with auth on: extra links from the REST API, the Fleet app's auth."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from urllib.parse import quote

import pytest

from tasks.core import keys
from tasks.core.keys import safe_run_id
from tests.integration.airflow_ui import VIEWER

pytestmark = pytest.mark.integration
NIGHTLY = "edgeops_nightly"


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # noqa: ANN002, ANN003 - urllib's signature
        return None


def get(url: str, token: str | None = None, follow: bool = True) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    opener = urllib.request.build_opener(*([] if follow else [NoRedirect()]))
    try:
        with opener.open(req, timeout=60) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def links(server, run_id: str, task_id: str, token: str) -> dict[str, str | None]:
    url = f"{server.url}/api/v2/dags/{NIGHTLY}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}/links"
    status, _, body = get(url, token)
    assert status == 200, body
    return json.loads(body)["extra_links"]


def test_extra_links_of_a_finished_nightly_run(nightly_run, airflow_ui, ui_connections):
    """publish (a StepOperator) has Report and Artifacts; Report opens the run's HTML report, with its "Rolled
    out" section, after a login."""
    token = airflow_ui.token()
    run_key = safe_run_id(nightly_run.run_id)
    got = links(airflow_ui, nightly_run.run_id, "publish", token)
    assert {"Report", "Artifacts"} <= set(got), got
    assert got["Report"] == f"/edgeops/report/{run_key}"  # the UI resolves it on its own origin
    console = ui_connections["edgeops_minio"]["extra"]["console_url"]
    assert got["Artifacts"] == f"{console}/browser/artifacts/{quote(keys.run_prefix(run_key), safe='')}"
    assert get(airflow_ui.url + got["Report"])[0] == 401  # no login, no report
    status, _, page = get(airflow_ui.url + got["Report"], token, follow=False)
    assert status == 200 and b"<html" in page.lower() and b'id="rolled-out"' in page
    assert b"Not rolled out yet" in page  # a tiny run never ships by itself
    status, headers, _ = get(f"{airflow_ui.url}/edgeops/object/{keys.report(run_key)}", token, follow=False)
    assert status == 307 and "Signature=" in headers["location"], headers
    status, _, page = get(headers["location"])  # the presigned URL itself: no Airflow login needed
    assert status == 200 and b"<html" in page.lower()
    assert get(f"{airflow_ui.url}/edgeops/report/..%2Fx", token, follow=False)[0] == 404


def test_fleet_page_needs_a_login(airflow_ui):
    url = f"{airflow_ui.url}/edgeops/fleet"
    assert get(url)[0] == 401
    assert get(url, "not-a-jwt")[0] == 403
    assert get(f"{airflow_ui.url}/edgeops/object/runs/x/report/index.html")[0] == 401
    status, _, page = get(url, airflow_ui.token(VIEWER))  # a viewer may read it
    assert status == 200 and b"<h1>Fleet</h1>" in page and b"pi1" in page, page[:500]


def test_object_links_refuse_other_keys(airflow_ui):
    token = airflow_ui.token()
    assert get(f"{airflow_ui.url}/edgeops/object/datasets/x", token, follow=False)[0] == 404
    assert get(f"{airflow_ui.url}/edgeops/object/runs/no-such-run/report/index.html", token, follow=False)[0] == 404


def test_fleet_view_is_in_the_navigation(airflow_ui):
    status, _, body = get(f"{airflow_ui.url}/api/v2/plugins", airflow_ui.token())
    plugin = next(p for p in json.loads(body)["plugins"] if p["name"] == "edgeops")
    assert {v["href"] for v in plugin["external_views"]} == {"/edgeops/fleet"}
    assert {v["destination"] for v in plugin["external_views"]} == {"nav", "dag_run"}
