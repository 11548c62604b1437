"""The nightly DAG then the rollout DAG through dag.test(), on the real MinIO and sshd devices, tiny profile.

* a blessed nightly run rolls out to 4 devices in 2 waves: canary first (every variant benchmarked on the
  device), per-group variant chosen from the canary's figures, then the later wave; device states and the
  record are written;
* a canary that misses its latency budget (0.001 ms) stops the rollout: the canary is switched back to what
  it ran before, the later wave is never touched, and the record says why;
* a rollback to the previous release, through the same DAG, also after a failed canary (not to the rejected
  release).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tasks.core import keys
from tasks.core.keys import safe_run_id
from tests.helpers import export_connections, task_states

pytestmark = pytest.mark.integration
DAGS = Path(__file__).resolve().parents[2] / "dags"


def _dag(dag_id: str):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS / f"{dag_id}.py")).dags[dag_id]


def _fleet(tmp: Path, devices: list[tuple[str, int]], p95_ms: float = 5000.0, optional: tuple[str, ...] = ()) -> Path:
    """A fleet file: the named sshd devices in the given waves, one group with the given p95 budget."""
    doc = {"groups": {"sim": {"threads": 1, "app": {"http_port": 0},  # the stand-ins share one loopback
                              "budgets": {"p95_latency_ms": p95_ms, "peak_rss_mb": 4000.0,
                                          "accuracy_tolerance": 0.5}}},
           "devices": [{"name": n, "group": "sim", "wave": w, "optional": n in optional} for n, w in devices]}
    path = tmp / f"fleet-{p95_ms}.json"
    path.write_text(json.dumps(doc))
    return path


def _current(stack_env, device: str, extra: dict | None = None) -> str | None:
    roots = {d["name"]: d["deploy_root"] for d in stack_env["devices"]} | (extra or {}).get("roots", {})
    root = Path(roots[device])
    link = root / "current"
    return os.path.basename(os.path.realpath(link)) if link.is_symlink() else None


@pytest.fixture(scope="module")
def extra_devices(tmp_path_factory):
    """pi3 and pi4: two more sshd devices for this module, in a private state dir on free ports (the shared
    stack's devices and state are not touched), stopped at the end."""
    import socket

    from scripts.devstack import common, devices

    state = tmp_path_factory.mktemp("extra-devices")
    mp = pytest.MonkeyPatch()
    for module, name, value in ((devices, "STATE", state), (devices, "LOGS", state / "logs"),
                                (common, "LOGS", state / "logs"), (common, "RUN", state / "run"),
                                (devices, "CLIENT_KEY", state / "keys" / "id_ed25519"),
                                (devices, "KNOWN_HOSTS", state / "keys" / "known_hosts")):
        mp.setattr(module, name, value)
    socks = [socket.socket() for _ in range(2)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    cfg = {"devices": [{"name": f"pi{3 + i}", "host": "127.0.0.1", "port": p} for i, p in enumerate(ports)]}
    try:
        devices.up(cfg)
        described = {d["name"]: devices.describe(d) for d in cfg["devices"]}
        yield {"roots": {n: d["deploy_root"] for n, d in described.items()},
               "connections": {devices.conn_id(d["name"]): devices.connection(d, described[d["name"]])
                               for d in cfg["devices"]}}
    finally:
        devices.down(cfg)
        mp.undo()


@pytest.fixture
def rollout(stack_env, airflow_db, monkeypatch, tmp_path):
    export_connections(monkeypatch, stack_env["connections"])

    def run(fleet: Path, **conf):
        monkeypatch.setenv("EDGEOPS_FLEET", str(fleet))
        return _dag("edgeops_rollout").test(run_conf=conf)

    return run


FOUR = [("pi1", 0), ("pi2", 1), ("pi3", 1), ("pi4", 1)]


def test_canary_then_later_wave(blessed_run, rollout, stack_env, extra_devices, monkeypatch, artifact_store,
                                tmp_path):
    export_connections(monkeypatch, extra_devices["connections"])
    dag_run = rollout(_fleet(tmp_path, FOUR), run_id=blessed_run)
    states = task_states(dag_run)
    assert "success" in str(dag_run.state).lower(), states
    record = artifact_store.get_json(keys.rollout_record(safe_run_id(dag_run.run_id)))
    assert record["status"] == "succeeded" and record["run_id"] == blessed_run
    choice = record["choices"]["sim"]
    assert choice["variant"] and choice["measured_on"] == ["pi1"], choice
    by_device = {d["device"]: d for d in record["devices"]}
    assert states["waves.deploy"] == {"success"} and len(by_device) == 4
    for name in ("pi1", "pi2", "pi3", "pi4"):
        assert by_device[name]["status"] == "switched"
        assert by_device[name]["release"] == f"{blessed_run}.{choice['variant']}"
        assert _current(stack_env, name, extra_devices) == by_device[name]["release"]
        state = artifact_store.get_json(keys.device_state(name))
        assert state["release"] == by_device[name]["release"] and state["variant"] == choice["variant"]
    manifest = artifact_store.get_json(keys.manifest(blessed_run))
    assert set(by_device["pi1"]["bench"]) == set(manifest["gate"]["deploy"])  # the canary measured them all
    assert set(by_device["pi2"]["bench"]) == {choice["variant"]}  # later waves get only their variant


def test_a_canary_over_budget_stops_the_rollout_and_is_switched_back(blessed_run, rollout, stack_env,
                                                                     extra_devices, monkeypatch, artifact_store,
                                                                     tmp_path):
    export_connections(monkeypatch, extra_devices["connections"])
    names = [n for n, _ in FOUR]
    before = {n: _current(stack_env, n, extra_devices) for n in names}
    dag_run = rollout(_fleet(tmp_path, FOUR, p95_ms=0.001), run_id=blessed_run, variant="fp32")
    states = task_states(dag_run)
    assert "failed" in str(dag_run.state).lower(), states
    assert states["canary.switch_back"] == {"success"} and states["waves.deploy"] <= {"skipped", "None"}, states
    record = artifact_store.get_json(keys.rollout_record(safe_run_id(dag_run.run_id)))
    assert record["status"] == "canary_failed"
    assert any("p95" in r and "budget 0.001" in r for r in record["choices"]["sim"]["reasons"]), record
    assert {n: _current(stack_env, n, extra_devices) for n in names} == before  # pi1 back, the rest untouched
    assert {d["device"]: d["status"] for d in record["devices"]} == {
        "pi1": "rolled_back", "pi2": "not_reached", "pi3": "not_reached", "pi4": "not_reached"}


def test_rollback_to_the_previous_release(blessed_run, rollout, stack_env, artifact_store, tmp_path):
    fleet = _fleet(tmp_path, [("pi1", 0), ("pi2", 1)])
    first = rollout(fleet, run_id=blessed_run, variant="fp32")
    assert "success" in str(first.state).lower(), task_states(first)
    on_pi2 = _current(stack_env, "pi2")
    second = rollout(fleet, run_id=blessed_run, variant="int8")
    assert "success" in str(second.state).lower(), task_states(second)
    assert _current(stack_env, "pi2") == f"{blessed_run}.int8"
    back = rollout(fleet, action="rollback", devices=["pi2"])
    assert "success" in str(back.state).lower(), task_states(back)
    assert _current(stack_env, "pi2") == on_pi2
    state = artifact_store.get_json(keys.device_state("pi2"))
    assert state["action"] == "rollback" and state["release"] == on_pi2


def test_a_rollback_after_a_failed_canary_skips_the_rejected_release(blessed_run, rollout, stack_env,
                                                                    artifact_store, tmp_path):
    """int8, then fp32, then an fp16 canary over budget (switched back to fp32): the device's state record
    names fp16 as previous, but a rollback lands on int8, what it ran before the last rollout that changed it."""
    fleet = _fleet(tmp_path, [("pi1", 0), ("pi2", 1)])
    for variant in ("int8", "fp32"):
        dag_run = rollout(fleet, run_id=blessed_run, variant=variant)
        assert "success" in str(dag_run.state).lower(), task_states(dag_run)
    failed = rollout(_fleet(tmp_path, [("pi1", 0), ("pi2", 1)], p95_ms=0.001), run_id=blessed_run, variant="fp16")
    assert "failed" in str(failed.state).lower() and _current(stack_env, "pi1") == f"{blessed_run}.fp32"
    assert artifact_store.get_json(keys.device_state("pi1"))["previous"] == f"{blessed_run}.fp16"
    back = rollout(fleet, action="rollback", devices=["pi1"])
    assert "success" in str(back.state).lower(), task_states(back)
    assert _current(stack_env, "pi1") == f"{blessed_run}.int8"


def test_unknown_device_and_unblessed_run_fail_in_plan(blessed_run, rollout, tmp_path):
    fleet = _fleet(tmp_path, [("pi1", 0)])
    dag_run = rollout(fleet, devices=["nope"])
    states = task_states(dag_run)
    assert states["plan"] == {"failed"} and states["canary.deploy"] == {"upstream_failed"}, states


def test_an_offline_device_in_a_later_wave_is_reported_and_tolerated(blessed_run, rollout, stack_env, monkeypatch,
                                                                     artifact_store, tmp_path):
    """Later-wave devices whose sshd is not listening: ``ghost`` fails (max_failed=1 lets the rest proceed);
    ``spare``, optional, is skipped at once (no retry) and not counted as failed."""
    import socket

    from tasks.fleet.status import fleet_status
    from tests.helpers import conn_env_var

    with socket.socket() as s:  # a port nothing listens on once this socket is closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conn = {**stack_env["connections"]["edgeops_device_pi2"], "port": port}
    for name in ("ghost", "spare"):
        monkeypatch.setenv(conn_env_var(f"edgeops_device_{name}"), json.dumps(conn))
    fleet = _fleet(tmp_path, [("pi1", 0), ("pi2", 1), ("ghost", 1), ("spare", 1)], optional=("spare",))
    dag_run = rollout(fleet, run_id=blessed_run, max_failed=1)
    assert "success" in str(dag_run.state).lower(), task_states(dag_run)
    record = artifact_store.get_json(keys.rollout_record(safe_run_id(dag_run.run_id)))
    by_device = {d["device"]: d["status"] for d in record["devices"]}
    assert by_device == {"pi1": "switched", "pi2": "switched", "ghost": "failed", "spare": "skipped"}, record
    assert any("within max_failed=1" in r and "ghost" in r and "spare" not in r for r in record["reasons"])
    tries = {ti.map_index: (str(ti.state), ti.try_number) for ti in dag_run.get_task_instances()
             if ti.task_id == "waves.deploy"}
    assert sorted(s for s, _ in tries.values()) == ["failed", "skipped", "success"], tries
    assert [n for s, n in tries.values() if s == "skipped"] == [1], tries  # skipped on its first try
    pi2 = next(d for d in record["devices"] if d["device"] == "pi2")
    assert pi2["bench"] and pi2["label"] == "host"  # benchmarked although another device of its wave failed
    from tasks.fleet.inventory import load_inventory

    rows = {r.device: r for r in fleet_status(artifact_store, load_inventory(fleet))}
    assert rows["ghost"].status in ("stale", "never deployed") and rows["pi2"].status == "ok", rows


def test_a_transient_fault_in_a_device_task_is_retried_and_the_rollout_succeeds(blessed_run, rollout, artifact_store,
                                                                                monkeypatch, tmp_path):
    """The canary's benchmark fails its first try with an injected transient fault (``fault_point``, before the
    device is touched): Airflow retries it and the rollout succeeds."""
    from edgeops_airflow.reliability import ENV_FAULT_DIR

    faults = tmp_path / "faults"
    faults.mkdir()
    (faults / "canary.benchmark").touch()
    monkeypatch.setenv(ENV_FAULT_DIR, str(faults))
    dag_run = rollout(_fleet(tmp_path, [("pi1", 0)]), run_id=blessed_run, variant="fp32")
    assert "success" in str(dag_run.state).lower(), task_states(dag_run)
    tries = [(str(ti.state), ti.try_number) for ti in dag_run.get_task_instances() if ti.task_id == "canary.benchmark"]
    assert tries == [("success", 2)], tries
    assert not list(faults.iterdir())  # the fault fired
    record = artifact_store.get_json(keys.rollout_record(safe_run_id(dag_run.run_id)))
    assert record["status"] == "succeeded" and record["devices"][0]["status"] == "switched", record
