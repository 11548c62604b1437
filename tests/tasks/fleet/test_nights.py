"""fleet status's last good night: how long ago, and what it says when Airflow does not answer."""

from __future__ import annotations

import datetime as dt

from tasks.fleet.nights import LastNights, ago, lines

NOW = dt.datetime(2026, 12, 2, 8, 30, tzinfo=dt.UTC)


def test_ago():
    assert ago("2026-12-02T08:25:00+00:00", NOW) == "5m ago"
    assert ago("2026-12-02T02:10:00Z", NOW) == "6h 20m ago"
    assert ago("2026-11-29T07:00:00+00:00", NOW) == "3d 1h ago"
    assert ago("", NOW) == "never" and ago("yesterday", NOW) == "unknown"


def test_lines_name_the_runs_their_state_and_age():
    nights = LastNights("run-a", "2026-12-01T02:40:00+00:00", "scheduled__2026-12-02T02:00:00+00:00", "failed",
                        "2026-12-02T02:20:00+00:00")
    assert lines(nights, NOW) == ["newest blessed run: run-a (1d 5h ago)",
                                  "newest nightly:     scheduled__2026-12-02T02:00:00+00:00: failed (6h 10m ago)"]


def test_unknown_state_says_why():
    nights = LastNights("", "", "run-b", "unknown", "2026-12-02T08:00:00+00:00", "Airflow's API does not answer")
    out = lines(nights, NOW)
    assert out[0].endswith("none (no blessed run of a shipping profile)")
    assert out[1].endswith("run-b: unknown (30m ago)") and "does not answer" in out[2]
    assert LastNights.from_xcom(nights.to_xcom()) == nights
