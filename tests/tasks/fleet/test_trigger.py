"""`edgeops rollout|rollback` and the REST client, against a small Airflow stand-in: a real HTTP server on a
local socket that checks the token and the request bodies, and plays the DAG by writing the rollout record to
a private bucket of the real MinIO."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tasks.cli import main
from tasks.core import keys
from tasks.core.exceptions import AirflowApiError
from tasks.core.keys import run_key
from tasks.fleet.airflow_api import AirflowApi
from tasks.fleet.inventory import load_inventory
from tasks.fleet.trigger import new_run_id, rollout_conf, split_names, trigger
from tests.tasks.fleet.builders import outcome, record

TOKEN = "jwt-for-tests"
RUNS = "/api/v2/dags/edgeops_rollout/dagRuns"


class FakeAirflow(ThreadingHTTPServer):
    """Airflow's token and dagRuns endpoints; every request is kept in ``requests``."""

    def __init__(self, store: Any = None, final: str = "success") -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.store, self.final = store, final
        self.requests: list[tuple[str, str, Any]] = []
        self.polls: dict[str, int] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    server: FakeAirflow

    def log_message(self, *args: Any) -> None:
        pass

    def _reply(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> Any:
        n = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(n)) if n else None

    def _authorized(self) -> bool:
        if self.headers.get("Authorization") == f"Bearer {TOKEN}":
            return True
        self._reply(401, {"detail": "Not authenticated"})
        return False

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = self._body()
        self.server.requests.append(("POST", self.path, body))
        if self.path == "/auth/token":
            ok = body == {"username": "ops", "password": "s3cret"}
            return self._reply(201, {"access_token": TOKEN}) if ok else self._reply(401, {"detail": "Invalid"})
        if self.path != RUNS or not self._authorized():
            return None if self.path == RUNS else self._reply(404, {"detail": "Not Found"})
        if set(body) != {"dag_run_id", "logical_date", "conf"} or body["logical_date"] is not None:
            return self._reply(422, {"detail": f"bad body {body}"})
        if self.server.store is not None:  # play the DAG: the record is its last write
            rid = run_key(body["dag_run_id"])
            rec = record(rid, "run-b", "succeeded" if self.server.final == "success" else "failed",
                         [outcome("kitchen", "pi4", 0, "switched", "run-b.int8", "int8", p50=4.0)],
                         "2026-01-02T03:00:00+00:00", airflow_run_id=body["dag_run_id"])
            self.server.store.put_json(keys.rollout_record(rid), rec.to_xcom())
        return self._reply(200, {"dag_run_id": body["dag_run_id"], "state": "queued", "conf": body["conf"]})

    def do_GET(self) -> None:  # noqa: N802
        self.server.requests.append(("GET", self.path, None))
        if not self._authorized():
            return
        run_id = self.path.rsplit("/", 1)[-1]
        n = self.server.polls[run_id] = self.server.polls.get(run_id, 0) + 1
        self._reply(200, {"dag_run_id": run_id, "state": ["queued", "running", self.server.final][min(n, 3) - 1]})


@pytest.fixture
def airflow_api(request, monkeypatch) -> Iterator[FakeAirflow]:
    server = FakeAirflow(*getattr(request, "param", ()))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("EDGEOPS_AIRFLOW_URL", server.url)
    monkeypatch.setenv("EDGEOPS_AIRFLOW_USER", "ops")
    monkeypatch.setenv("EDGEOPS_AIRFLOW_PASSWORD", "s3cret")
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("argv", [["rollback", "--devices", "kitchen,nope"], ["rollback", "--group", "pi9"],
                                  ["rollout", "--devices", "nope", "--wait"], ["rollout", "--group", "pi4,pi9"]])
def test_unknown_names_are_refused_before_any_http(airflow_api, fleet_file, capsys, argv) -> None:
    assert main([*argv, "--file", str(fleet_file)]) == 2
    err = capsys.readouterr().err
    assert "edgeops: config error: unknown " in err and ("'nope'" in err or "'pi9'" in err)
    assert airflow_api.requests == []


def test_rollback_needs_devices_or_group(fleet_file) -> None:
    with pytest.raises(SystemExit):
        main(["rollback", "--file", str(fleet_file)])


def test_conf_matches_the_dag_params(fleet_file) -> None:
    from tasks.core.exceptions import ConfigError

    inv = load_inventory(fleet_file)
    assert rollout_conf(inv, "rollback", "run-a", ("kitchen", "garage")) == {
        "action": "rollback", "run_id": "run-a", "devices": ["kitchen", "garage"], "groups": [], "variant": None}
    assert rollout_conf(inv, "forward", groups=("pi5",), variant="int8")["variant"] == "int8"
    with pytest.raises(ConfigError, match="variant applies to a forward rollout"):
        rollout_conf(inv, "rollback", devices=("kitchen",), variant="int8")
    assert split_names(" a, b,,c ") == ("a", "b", "c") and run_key(new_run_id("rollback")).startswith("cli_rollback__")


def test_client_gets_a_token_then_posts_the_run(airflow_api) -> None:
    api = AirflowApi.from_env()
    run = api.trigger("edgeops_rollout", {"action": "rollback", "devices": ["kitchen"]}, "cli_rollback__x")
    assert run["state"] == "queued"
    token, post = airflow_api.requests
    assert token == ("POST", "/auth/token", {"username": "ops", "password": "s3cret"})
    assert post == ("POST", RUNS, {"dag_run_id": "cli_rollback__x", "logical_date": None,
                                   "conf": {"action": "rollback", "devices": ["kitchen"]}})
    assert api.wait("edgeops_rollout", "cli_rollback__x", poll_s=0.01) == "success"
    assert [r[1] for r in airflow_api.requests].count("/auth/token") == 1  # one token, reused


def test_client_errors_are_clear(airflow_api, monkeypatch) -> None:
    monkeypatch.setenv("EDGEOPS_AIRFLOW_PASSWORD", "wrong")
    with pytest.raises(AirflowApiError, match=r"/auth/token: HTTP 401 \(check EDGEOPS_AIRFLOW_USER/PASSWORD\)"):
        AirflowApi.from_env().trigger("edgeops_rollout", {})
    with pytest.raises(AirflowApiError, match="does not answer"):
        AirflowApi("http://127.0.0.1:9", "a", "b", timeout=2).token()


def test_client_logs_in_with_the_dev_stacks_generated_password(airflow_api, monkeypatch, tmp_path) -> None:
    """No login in the environment: the dev stack's env.json names its user and its 0600 passwords file."""
    passwords = tmp_path / "airflow" / "passwords.json"
    passwords.parent.mkdir()
    passwords.write_text(json.dumps({"ops": "s3cret"}))
    doc = {"airflow": {"url": airflow_api.url, "user": "ops", "passwords_file": str(passwords)}}
    (tmp_path / "env.json").write_text(json.dumps(doc))
    for var in ("EDGEOPS_AIRFLOW_URL", "EDGEOPS_AIRFLOW_USER", "EDGEOPS_AIRFLOW_PASSWORD"):
        monkeypatch.delenv(var)
    monkeypatch.setenv("EDGEOPS_DEVSTACK_DIR", str(tmp_path))
    api = AirflowApi.from_env()
    assert (api.url, api.username) == (airflow_api.url, "ops")
    assert api.trigger("edgeops_rollout", {}, "cli_forward__x")["state"] == "queued"


def test_no_password_is_one_clear_error_before_any_http(airflow_api, monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("EDGEOPS_AIRFLOW_PASSWORD")
    monkeypatch.setenv("EDGEOPS_DEVSTACK_DIR", str(tmp_path))  # no dev stack there
    with pytest.raises(AirflowApiError, match=r"no password for Airflow user 'ops'.*scripts.devstack password"):
        AirflowApi.from_env().trigger("edgeops_rollout", {})
    assert airflow_api.requests == []


@pytest.mark.integration
@pytest.mark.parametrize("final", ["success", "failed"])
def test_rollout_wait_prints_the_record(store_env, fleet_file, capsys, monkeypatch, final) -> None:
    server = FakeAirflow(store_env, final)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("EDGEOPS_AIRFLOW_URL", server.url)
    monkeypatch.setenv("EDGEOPS_AIRFLOW_USER", "ops")
    monkeypatch.setenv("EDGEOPS_AIRFLOW_PASSWORD", "s3cret")
    try:
        lines: list[str] = []
        api = AirflowApi.from_env()
        conf = rollout_conf(load_inventory(fleet_file), "forward", "run-b", groups=("pi4",))
        if final == "success":
            run_id = trigger(conf, True, api, lambda: store_env, lines.append, poll_s=0.01)
            assert server.requests[1][2]["conf"] == {"action": "forward", "run_id": "run-b", "devices": [],
                                                     "groups": ["pi4"], "variant": None}
            text = "\n".join(lines)
            assert f"rollout {run_key(run_id)} (forward run-b): succeeded; 1 switched" in text
            assert "kitchen" in text and "run-b.int8" in text and f"run {run_id}: running" in text
        else:
            monkeypatch.setattr("tasks.fleet.trigger.new_run_id", lambda action: "cli_forward__failed")
            assert main(["rollout", "--run", "run-b", "--group", "pi4", "--wait", "--file", str(fleet_file)]) == 1
            captured = capsys.readouterr()
            assert "rollout cli_forward__failed (forward run-b): failed" in captured.out
            assert "rollout run cli_forward__failed failed" in captured.err
    finally:
        server.shutdown()
        server.server_close()
