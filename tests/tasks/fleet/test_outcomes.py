"""Outcome strings have one home (tasks.fleet.records.Outcome / RolloutStatus); records on disk keep the strings."""

from __future__ import annotations

import json

import pytest

from tasks.core.exceptions import RecordError
from tasks.fleet.records import DeviceOutcome, Outcome, RolloutRecord, RolloutStatus
from tests.tasks.fleet.builders import outcome, record

ON_DISK = {"rollout_id": "r1", "action": "forward", "run_id": "run-a", "status": "canary_failed", "reasons": [],
           "devices": [{"device": "kitchen", "group": "pi4", "wave": 0, "status": "rolled_back"},
                       {"device": "garage", "group": "pi4", "wave": 1, "status": "not_reached"}]}


def test_records_written_before_the_enums_still_read_and_write_the_same_strings() -> None:
    rec = RolloutRecord.from_xcom(ON_DISK)
    assert rec.status is RolloutStatus.CANARY_FAILED
    assert [d.status for d in rec.devices] == [Outcome.ROLLED_BACK, Outcome.NOT_REACHED]
    raw = rec.to_xcom()
    assert raw["status"] == "canary_failed" and type(raw["status"]) is str
    assert [type(d["status"]) for d in raw["devices"]] == [str, str]
    assert json.loads(json.dumps(raw))["devices"][0]["status"] == "rolled_back"
    assert rec.summary() == "rollout r1 (forward run-a): canary_failed; 1 not_reached, 1 rolled_back"


def test_a_built_record_holds_the_enum_and_an_unknown_status_is_one_clear_error() -> None:
    assert outcome("kitchen", "pi4", 0, "switched").status is Outcome.SWITCHED
    assert record("r1", "run-a", "succeeded", [], "T1").status is RolloutStatus.SUCCEEDED
    with pytest.raises(RecordError, match=r"DeviceOutcome.status='switchd': expected one of \['switched'"):
        DeviceOutcome.from_xcom({**ON_DISK["devices"][0], "status": "switchd"})
    with pytest.raises(RecordError, match="RolloutRecord.status='done'"):
        RolloutRecord.from_xcom({**ON_DISK, "status": "done"})
