"""The collection's pure parts: the device listing's name checks, the record, the keys."""

from __future__ import annotations

import pytest

from tasks.core import keys
from tasks.core.exceptions import DeviceError
from tasks.fleet.collect import CollectResult
from tasks.fleet.collect_listing import SAMPLE, TELEMETRY, parse_listing

SHA = "ab" * 32


def test_listing_takes_what_the_service_writes_and_refuses_anything_else():
    raw = {"telemetry": [["run.int8", "20240101T000000Z-abc.json", 10, SHA],
                         ["..", "x.json", 1, SHA], ["run.int8", "y.json", 1, "not-a-sha"]],
           "samples": [["run.int8", f"20240101T000000Z-00000001-low-{SHA}.npz", 99],
                       ["run.int8", f"a-b-reservoir-{SHA}.npz", 5],
                       ["run.int8", f"x;rm -rf-low-{SHA}.npz", 5], ["run.int8", "no-sha-low.npz", 5],
                       ["../etc", f"a-low-{SHA}.npz", 5]]}
    listing = parse_listing(raw)
    assert [(f.kind, f.remote, f.sha256) for f in listing.files] == [
        (TELEMETRY, "telemetry/run.int8/20240101T000000Z-abc.json", SHA),
        (SAMPLE, f"samples/run.int8/20240101T000000Z-00000001-low-{SHA}.npz", SHA),
        (SAMPLE, f"samples/run.int8/a-b-reservoir-{SHA}.npz", SHA)]
    assert len(listing.unsafe) == 5


def test_a_malformed_listing_is_one_clear_error():
    with pytest.raises(DeviceError, match="listing is malformed"):
        parse_listing({"telemetry": [["only", "three", 1]], "samples": []})


def test_record_round_trips_and_says_what_failed():
    record = CollectResult("pi1", 3, 300, 1, 2, 1, 1, ("boom",), 0.5)
    assert CollectResult.from_xcom(record.to_xcom()) == record
    assert not record.ok and "error: boom" in record.summary()


def test_keys():
    assert keys.telemetry("pi1", "r.int8", "h-i.json") == "telemetry/pi1/r.int8/h-i.json"
    assert keys.incoming_sample("digits/", "pi1", "r.int8", "s.npz") == "digits/_incoming/pi1/r.int8/s.npz"
    assert keys.is_incoming("digits/_incoming/pi1/r/s.npz", "digits/")
    assert not keys.is_incoming("digits/cat/_incoming.png", "digits")
