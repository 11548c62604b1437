"""`edgeops fleet status` from state and rollout records written to a private bucket of the real MinIO."""

from __future__ import annotations

import json
import time

import pytest

from tasks.cli import main
from tasks.core import keys
from tasks.fleet import status
from tasks.fleet.history import recent_records
from tasks.fleet.inventory import Inventory
from tests.tasks.fleet.builders import outcome, record, state
from tests.tasks.fleet.conftest import FLEET

pytestmark = pytest.mark.integration

A, B = "run-a.int8", "run-b.fp16"
T1, T2, T3 = "2026-01-01T03:00:00+00:00", "2026-01-02T03:00:00+00:00", "2026-01-03T03:00:00+00:00"


def _write_fleet_history(store) -> None:
    """r1 put A everywhere but porch; r2 (newer) put B on kitchen and attic, garage failed, porch not reached;
    cellar was never touched; r3 is still running (a state, no record)."""
    r1 = record("r1", "run-a", "succeeded", [outcome("kitchen", "pi4", 0, "switched", A, "int8", p50=4.0),
                                             outcome("garage", "pi4", 1, "switched", A, "int8", p50=6.0),
                                             outcome("attic", "pi5", 1, "switched", A, "int8", p50=5.0)], T1)
    r2 = record("r2", "run-b", "failed", [
        outcome("kitchen", "pi4", 0, "switched", B, "fp16", p50=8.0),
        outcome("attic", "pi5", 1, "switched", B, "fp16", p50=9.0),
        outcome("garage", "pi4", 1, "failed", note="deploy/switch failed or device unreachable: state is stale"),
        outcome("porch", "pi5", 2, "not_reached")], T2, reasons=("1 device(s) failed: ['garage']",))
    store.put_json(keys.rollout_record("r1"), r1.to_xcom())
    time.sleep(1.1)  # LastModified orders the records
    store.put_json(keys.rollout_record("r2"), r2.to_xcom())
    store.put_json(keys.rollout_device("r2", "kitchen"), {"not": "a record"})  # ignored: not record.json
    for s in (state("kitchen", B, "r2", T2, previous=A), state("garage", A, "r1", T1),
              state("attic", A, "r1", T1),  # r2 says it switched attic to B: its state disagrees
              state("porch", "run-c.int8", "r3", T3, previous=None)):  # r3 running: newer than every record
        store.put_json(keys.device_state(s.device), s.to_xcom())


def test_ok_stale_and_never_deployed(fleet_store) -> None:
    _write_fleet_history(fleet_store)
    records = recent_records(fleet_store)
    assert [r.rollout_id for r in records] == ["r2", "r1"]
    rows = {r.device: r for r in status.fleet_status(fleet_store, Inventory.from_dict(FLEET))}
    assert {d: r.status for d, r in rows.items()} == {
        "kitchen": "ok", "garage": "stale", "attic": "stale", "porch": "ok", "cellar": "never deployed"}
    kitchen = rows["kitchen"]
    assert (kitchen.release, kitchen.run_id, kitchen.variant, kitchen.since, kitchen.by) == (
        B, "run-b", "fp16", T2, "r2 (deploy)")
    assert (kitchen.last_rollout, kitchen.last_outcome) == ("r2", "switched")
    assert "rollout r2 (failed) marked it failed" in rows["garage"].reason and rows["garage"].release == A
    assert "switched it to run-b.fp16, but its state record says run-a.int8" in rows["attic"].reason
    assert "r3" in rows["porch"].reason and "no record yet" in rows["porch"].reason
    assert rows["cellar"].release is None and rows["cellar"].reason == ""


def test_no_records_at_all(fleet_store) -> None:
    rows = status.fleet_status(fleet_store, Inventory.from_dict(FLEET))
    assert {r.status for r in rows} == {"never deployed"}


def test_cli_json_and_table(store_env, fleet_file, capsys) -> None:
    _write_fleet_history(store_env)
    assert main(["fleet", "status", "--json", "--file", str(fleet_file)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert set(doc) == {"devices", "rollouts", "checked", "nights"} and doc["checked"] is False
    assert {"blessed_run", "nightly_run", "nightly_state"} <= set(doc["nights"]), doc["nights"]
    assert [d["device"] for d in doc["devices"]] == ["kitchen", "garage", "attic", "porch", "cellar"]
    assert set(doc["devices"][0]) == {f.name for f in status.DeviceStatus.__dataclass_fields__.values()}
    assert status.DeviceStatus.from_xcom(doc["devices"][1]).status == "stale"
    assert [r["rollout_id"] for r in doc["rollouts"]] == ["r2", "r1"] and doc["rollouts"][0]["status"] == "failed"

    assert main(["fleet", "status", "--file", str(fleet_file)]) == 0
    out = capsys.readouterr().out
    header, *lines = out.splitlines()
    assert header.split() == ["DEVICE", "GROUP", "WAVE", "RELEASE", "RUN_ID", "VARIANT", "SINCE", "BY", "DRIFT",
                              "STATUS"]
    assert any(line.startswith("kitchen") and "no baseline" in line for line in lines)  # run-b has no manifest
    assert any(line.startswith("garage") and line.rstrip().endswith("stale") for line in lines)
    assert any(line.startswith("cellar") and line.rstrip().endswith("never deployed") for line in lines)
    assert "    ! rollout r2 (failed) marked it failed" in out and "newest rollout: rollout r2" in out


def test_check_compares_with_the_device(fleet_store, stack_env, monkeypatch) -> None:
    """pi1 of the dev stack (read only): its real current link against a state record that disagrees."""
    from tests.helpers import export_connections

    export_connections(monkeypatch, stack_env["connections"])
    inventory = Inventory.from_dict({"groups": FLEET["groups"], "devices": [
        {"name": "pi1", "group": "pi4", "wave": 0}, {"name": "ghost", "group": "pi4", "wave": 1}]})
    seen = status.read_with_env_connection(inventory.device("pi1"))
    current, kept = seen.current, seen.kept
    assert current is None or current in kept
    fleet_store.put_json(keys.device_state("pi1"), state("pi1", "not-on-the-device.int8", "r9", T1).to_xcom())
    rows = [status.check(r, inventory.device(r.device), status.read_with_env_connection)
            for r in status.fleet_status(fleet_store, inventory, [])]
    pi1, ghost = rows
    assert pi1.status == "drift" and pi1.on_device == current and pi1.kept == tuple(kept)
    assert "its state record says not-on-the-device.int8" in pi1.reason
    assert ghost.status == "unreachable" and "edgeops_device_ghost" in ghost.reason
