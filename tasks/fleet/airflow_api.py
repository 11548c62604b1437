"""A small client of Airflow 3's stable REST API (``/api/v2``), stdlib ``urllib`` only: trigger a DAG run and
follow it. ``tasks`` never imports Airflow; talking to its HTTP API is fine.

Airflow 3 wants a JWT: ``POST /auth/token`` with ``{"username", "password"}`` returns ``access_token``, sent as
``Authorization: Bearer`` on every call. Logins are on (no anonymous call gets through). Where to find them:
``$EDGEOPS_AIRFLOW_URL`` / ``$EDGEOPS_AIRFLOW_USER`` / ``$EDGEOPS_AIRFLOW_PASSWORD``, else the dev stack's
``env.json`` (``.devstack/`` or ``$EDGEOPS_DEVSTACK_DIR``): its URL, its user and the 0600 passwords file the
stack generated at its first start; else http://127.0.0.1:8080 and user ``admin`` with no password (an error
that says what to set, before any call).
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from tasks.core import names
from tasks.core.exceptions import AirflowApiError

REPO = Path(__file__).resolve().parents[2]
DEFAULT_URL = "http://127.0.0.1:8080"
FINISHED = ("success", "failed")
PASSWORD_HINT = (f"set {names.ENV_AIRFLOW_PASSWORD} (and {names.ENV_AIRFLOW_USER}); the dev stack's: "
                 f"`.venv/bin/python -m scripts.devstack password`")


def devstack_env() -> Path:
    """The dev stack's env.json (``$EDGEOPS_DEVSTACK_DIR``, default ``.devstack/``)."""
    return Path(os.environ.get(names.ENV_DEVSTACK_DIR) or REPO / ".devstack") / "env.json"


def _devstack_airflow(env_file: Path) -> dict[str, Any]:
    try:
        section = json.loads(env_file.read_text())["airflow"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    return section if isinstance(section, dict) else {}


def default_url(env_file: Path | None = None) -> str:
    """``$EDGEOPS_AIRFLOW_URL``, else the dev stack's Airflow URL, else http://127.0.0.1:8080."""
    if os.environ.get(names.ENV_AIRFLOW_URL):
        return os.environ[names.ENV_AIRFLOW_URL]
    return str(_devstack_airflow(env_file or devstack_env()).get("url") or DEFAULT_URL)


def default_login(env_file: Path | None = None) -> tuple[str, str]:
    """(user, password): the environment's, else the dev stack's (its passwords file); "" when none is known."""
    section = _devstack_airflow(env_file or devstack_env())
    user = os.environ.get(names.ENV_AIRFLOW_USER) or str(section.get("user") or names.AIRFLOW_ADMIN)
    if os.environ.get(names.ENV_AIRFLOW_PASSWORD):
        return user, os.environ[names.ENV_AIRFLOW_PASSWORD]
    try:
        return user, str(json.loads(Path(section["passwords_file"]).read_text())[user])
    except (OSError, ValueError, KeyError, TypeError):
        return user, ""


class AirflowApi:
    """``AirflowApi.from_env().trigger("edgeops_rollout", conf)``; one token per client, fetched on first use."""

    def __init__(self, url: str, username: str, password: str, timeout: float = 30.0) -> None:
        self.url, self.username, self.password, self.timeout = url.rstrip("/"), username, password, timeout
        self._token: str | None = None

    @classmethod
    def from_env(cls) -> AirflowApi:
        return cls(default_url(), *default_login())

    def token(self) -> str:
        if self._token is None:
            if not self.password:
                raise AirflowApiError(f"no password for Airflow user {self.username!r} at {self.url}: "
                                      f"{PASSWORD_HINT}")
            body = {"username": self.username, "password": self.password}
            reply = self._request("POST", "/auth/token", body, auth=False)
            if not isinstance(reply.get("access_token"), str):
                raise AirflowApiError(f"POST {self.url}/auth/token returned no access_token: {reply}")
            self._token = reply["access_token"]
        return self._token

    def trigger(self, dag_id: str, conf: dict[str, Any], run_id: str | None = None) -> dict[str, Any]:
        """Start a run now (``logical_date: null``, Airflow 3); returns the DAG run as the API describes it."""
        body: dict[str, Any] = {"logical_date": None, "conf": conf}
        if run_id:
            body["dag_run_id"] = run_id
        return self._request("POST", f"/api/v2/dags/{_q(dag_id)}/dagRuns", body)

    def dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return self._request("GET", f"/api/v2/dags/{_q(dag_id)}/dagRuns/{_q(run_id)}")

    def newest_run(self, dag_id: str) -> dict[str, Any] | None:
        """The DAG's newest run (by run_after) as the API describes it, or None when it never ran."""
        reply = self._request("GET", f"/api/v2/dags/{_q(dag_id)}/dagRuns?order_by=-run_after&limit=1")
        runs = reply.get("dag_runs")
        return dict(runs[0]) if isinstance(runs, list) and runs else None

    def runs(self, dag_id: str, limit: int = 100) -> list[dict[str, Any]]:
        """The DAG's newest runs (by run_after), newest first."""
        reply = self._request("GET", f"/api/v2/dags/{_q(dag_id)}/dagRuns?order_by=-run_after&limit={limit}")
        return [dict(r) for r in reply.get("dag_runs") or []]

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        reply = self._request("GET", f"/api/v2/dags/{_q(dag_id)}/dagRuns/{_q(run_id)}/taskInstances?limit=500")
        return [dict(t) for t in reply.get("task_instances") or []]

    def dag_ids(self) -> set[str]:
        """The DAGs Airflow has parsed."""
        return {str(d["dag_id"]) for d in self._request("GET", "/api/v2/dags?limit=500").get("dags") or []}

    def import_errors(self) -> list[dict[str, Any]]:
        return [dict(e) for e in self._request("GET", "/api/v2/importErrors").get("import_errors") or []]

    def unpause(self, dag_id: str) -> None:
        self._request("PATCH", f"/api/v2/dags/{_q(dag_id)}", {"is_paused": False})

    def wait(self, dag_id: str, run_id: str, timeout_s: float = 3600, poll_s: float = 5.0,
             progress: Any = None) -> str:
        """Poll until the run is ``success`` or ``failed``; return that state. ``progress(state)`` on changes."""
        deadline, last = time.monotonic() + timeout_s, None
        while True:
            state = str(self.dag_run(dag_id, run_id).get("state"))
            if state != last and progress is not None:
                progress(state)
            last = state
            if state in FINISHED:
                return state
            if time.monotonic() > deadline:
                raise AirflowApiError(f"run {run_id} of {dag_id} is still {state} after {timeout_s:.0f}s; it "
                                      f"continues in Airflow ({self.url})")
            time.sleep(poll_s)

    def _request(self, method: str, path: str, body: Any = None, auth: bool = True) -> dict[str, Any]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {self.token()}"
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:500].decode(errors="replace")
            hint = f" (check {names.ENV_AIRFLOW_USER}/PASSWORD)" if exc.code in (401, 403) else ""
            raise AirflowApiError(f"{method} {self.url}{path}: HTTP {exc.code}{hint}: {detail}") from None
        except (OSError, ValueError) as exc:  # URLError, refused, timeout, a reply that is not JSON
            raise AirflowApiError(f"{method} {self.url}{path}: Airflow's API does not answer ({exc}); is the "
                                  f"api-server up? (`.venv/bin/python -m scripts.devstack status`, or set "
                                  f"{names.ENV_AIRFLOW_URL})") from None


def _q(part: str) -> str:
    return urllib.parse.quote(part, safe="")
