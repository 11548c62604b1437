"""Device figures of the nightly report's history trend come from the rollout records."""

from __future__ import annotations

import copy

import pytest

from tasks.core import keys
from tasks.core.manifest import RunManifest
from tasks.core.results import BenchmarkResult, ModelBench
from tasks.fleet.history import device_trend, previous_release, read_state, recent_records, state_history
from tasks.report.history import history_rows
from tests.tasks.fleet.builders import outcome, record, state
from tests.tasks.manifests import REF, manifest, variant, verdict


def _records():
    newest = record("r3", "run-b", "succeeded", [
        outcome("kitchen", "pi4", 0, "switched", "run-b.int8", "int8", p50=4.0),
        outcome("attic", "pi5", 1, "switched", "run-b.int8", "int8", label="native", p50=40.0),
        outcome("garage", "pi4", 1, "switched", "run-b.int8", "int8", p50=6.0),
        outcome("porch", "pi5", 2, "failed")], "T3")
    older_same_run = record("r2", "run-b", "succeeded",
                            [outcome("kitchen", "pi4", 0, "switched", "run-b.int8", "int8", p50=99.0)], "T2")
    canary_failed = record("r1", "run-a", "canary_failed",
                           [outcome("kitchen", "pi4", 0, "rolled_back", "old.fp32", "fp32", p50=50.0)], "T1")
    rollback = record("r0", "run-z", "succeeded", [outcome("kitchen", "pi4", 0, "rolled_back", "run-z.fp32")],
                      "T0", action="rollback")
    return [newest, older_same_run, canary_failed, rollback]


def test_device_trend_uses_the_newest_forward_rollout_of_each_run() -> None:
    assert device_trend(_records()) == {"run-b": (6.0, "host/native")}


# --- what "previous" means for a rollback without a run (records newest first, as state_history yields them) ---
def _switch(release: str | None, previous: str | None, rollout_id: str, action: str = "deploy"):
    return state("kitchen", release, rollout_id, f"T-{rollout_id}", previous=previous, action=action)


BEFORE = [_switch("run-b.fp32", "run-a.int8", "r1"), _switch("run-a.int8", None, "r0")]  # newest first


def test_a_rollback_after_a_failed_canary_lands_before_the_last_rollout_that_changed_the_device() -> None:
    canary_failed = [_switch("run-b.fp32", "run-c.int8", "r2", "rollback"),  # switched back: state.previous
                     _switch("run-c.int8", "run-b.fp32", "r2")]                # names the rejected release
    assert canary_failed[0].previous == "run-c.int8"
    assert previous_release([*canary_failed, *BEFORE]) == "run-a.int8"


def test_a_rollback_after_a_promote_lands_before_that_rollout() -> None:
    promoted = [_switch("run-c.fp16", "run-c.int8", "r2", "promote"),  # state.previous: the canary's first variant
                _switch("run-c.int8", "run-b.fp32", "r2")]
    assert promoted[0].previous == "run-c.int8"
    assert previous_release([*promoted, *BEFORE]) == "run-b.fp32"


def test_previous_release_of_plain_histories() -> None:
    assert previous_release(BEFORE) == "run-a.int8"
    redeploy = _switch("run-b.fp32", "run-b.fp32", "r2")  # the release it already ran: changed nothing
    assert previous_release([redeploy, *BEFORE]) == "run-a.int8"
    rollback = _switch("run-a.int8", "run-b.fp32", "r2", "rollback")  # a rollback is a rollout: undone by the next
    assert previous_release([rollback, *BEFORE]) == "run-b.fp32"
    assert previous_release(BEFORE[1:]) is None  # the first deploy: nothing ran before
    assert previous_release([]) is None
    new_canary_failed = [_switch(None, "run-c.int8", "r0", "rollback"), _switch("run-c.int8", None, "r0")]
    assert previous_release(new_canary_failed) is None  # nothing ran before and nothing runs now


def test_previous_release_reads_no_further_than_it_needs() -> None:
    def history():
        yield from [_switch("run-c.fp16", "run-c.int8", "r2", "promote"), _switch("run-c.int8", "run-b.fp32", "r2"),
                    BEFORE[0]]  # one record past the step, to see the step end
        raise AssertionError("read past the newest rollout that changed the device")

    assert previous_release(history()) == "run-b.fp32"


def _manifest(run_id: str, devices: tuple[BenchmarkResult, ...] = ()) -> RunManifest:
    return manifest(run_id, {"fp32": variant(0.95), "int8": variant(0.9, 9)}, verdict(True, ("int8",), "int8"),
                    created_at="c", devices=devices)


def test_history_rows_take_the_mapping_and_old_manifests_still_work() -> None:
    old_bench = ModelBench({"p50": 7.5}, 0.9, 1.0, 50.0, 32, "int8", 9)  # a schema-2 manifest's own devices
    old = _manifest("run-old", (BenchmarkResult("pi", "x86_64", "run-old.int8", "int8", "host", REF,
                                                {"int8": old_bench}),))
    rows = history_rows([_manifest("run-b"), old, _manifest("run-none")], _manifest("run-c"),
                        device_trend(_records()))
    got = {r["run_id"]: (r["device_p50_ms"], r["device_label"]) for r in rows}
    assert got == {"run-c": (None, None), "run-b": (6.0, "host/native"), "run-old": (7.5, "host"),
                   "run-none": (None, None)}
    assert history_rows([copy.deepcopy(old)], _manifest("run-c"))[1]["device_p50_ms"] == 7.5  # no mapping


@pytest.mark.integration
def test_recent_records_and_states_from_the_store(fleet_store) -> None:
    import time

    for i, rec in enumerate(reversed(_records())):
        if i:
            time.sleep(1.1)
        fleet_store.put_json(keys.rollout_record(rec.rollout_id), rec.to_xcom())
    fleet_store.put_json(keys.rollout_record("broken"), {"rollout_id": "broken"})  # newest, unreadable: skipped
    assert [r.rollout_id for r in recent_records(fleet_store)] == ["r3", "r2", "r1", "r0"]
    assert [r.rollout_id for r in recent_records(fleet_store, limit=2)] == ["r3", "r2"]
    assert read_state(fleet_store, "kitchen") is None
    s = state("kitchen", "run-b.int8", "r3", "T3")
    fleet_store.put_json(keys.device_state("kitchen"), s.to_xcom())
    assert read_state(fleet_store, "kitchen") == s


@pytest.mark.integration
def test_state_history_reads_every_version_newest_first(fleet_store) -> None:
    key = keys.device_state("kitchen")
    assert list(state_history(fleet_store, "kitchen")) == []
    written = [*reversed(BEFORE), _switch("run-c.int8", "run-b.fp32", "r2"),
               _switch("run-b.fp32", "run-c.int8", "r2", "rollback")]  # a canary switched back
    for s in written:
        fleet_store.put_json(key, s.to_xcom())
    fleet_store.put_json(keys.device_state("kitchen2"), written[0].to_xcom())  # same prefix, another device
    assert list(state_history(fleet_store, "kitchen")) == written[::-1]
    assert previous_release(state_history(fleet_store, "kitchen")) == "run-a.int8"
