"""The Fleet page: newest benchmark per device, and what the HTML shows and links."""

from __future__ import annotations

from tasks.fleet.drift import DriftVerdict
from tasks.fleet.page import FleetPage, FleetRow, newest_bench, render
from tasks.fleet.status import DeviceStatus
from tests.tasks.fleet.builders import outcome, record


def _records():
    newer = record("r2", "run-b", "succeeded", [outcome("kitchen", "pi4", 0, "switched", "run-b.int8", "int8",
                                                        label="native", p50=6.5),
                                                outcome("garage", "pi4", 1, "failed", note="offline")],
                   "2026-01-03T03:00:00+00:00")
    older = record("r1", "run-a", "succeeded", [outcome("garage", "pi4", 1, "switched", "run-a.fp16", "fp16",
                                                        p50=9.0)], "2026-01-02T03:00:00+00:00")
    return [newer, older]


def test_newest_bench_skips_outcomes_without_a_switch() -> None:
    records = _records()
    kitchen, garage = newest_bench(records, "kitchen"), newest_bench(records, "garage")
    assert kitchen is not None and (kitchen.rollout_id, kitchen.variant, kitchen.label) == ("r2", "int8", "native")
    assert kitchen.p50_ms == 6.5 and kitchen.p95_ms > kitchen.p50_ms
    assert garage is not None and (garage.rollout_id, garage.variant) == ("r1", "fp16")  # r2 failed it
    assert newest_bench(records, "attic") is None


def test_render_shows_status_reason_and_report_links() -> None:
    records = _records()
    ok = DeviceStatus("kitchen", "pi4", 0, "ok", "run-b.int8", "run-b", "int8", "2026-01-03T02:59:00+00:00",
                      "r2 (deploy)", last_rollout="r2", last_outcome="switched",
                      drift=DriftVerdict("kitchen", "run-b.int8", "drift", 900, 0.41, 0.3, reason="class PSI 0.410"))
    stale = DeviceStatus("garage", "pi4", 1, "stale", "run-a.fp16", "run-a", "fp16", "2026-01-02T02:59:00+00:00",
                         reason="rollout r2 (succeeded) marked it failed: offline <b>", last_rollout="r2")
    never = DeviceStatus("attic", "pi5", 1, "never deployed")
    page = render(FleetPage((FleetRow(ok, newest_bench(records, "kitchen")), FleetRow(stale, None),
                             FleetRow(never, None)), tuple(records)), lambda key: f"/o/{key}")
    assert '<span class="status ok">ok</span>' in page and '<span class="status stale">stale</span>' in page
    assert "offline &lt;b&gt;" in page and "offline <b>" not in page  # reasons are escaped
    assert 'href="/o/rollouts/r2/report.html"' in page and 'href="/o/devices/kitchen/state.json"' in page
    assert "6.500" in page and "native (int8)" in page
    assert '<tr id="device-attic"><td>attic</td>' in page  # no state record: nothing to link
    assert 'title="class PSI 0.410">drift 0.41</span>' in page and "<td>-</td>" in page  # drift column
    assert page.count("<tr id=\"device-") == 3 and 'href="/o/rollouts/r1/report.html"' in page


def test_rolled_out_section_lists_the_runs_rollouts_only() -> None:
    from tasks.fleet.page import rolled_out_section
    from tests.tasks.fleet.builders import outcome, record

    mine = record("r1", "run-a", "succeeded", [outcome("kitchen", "g", 0, "switched", "run-a.int8", "int8")], "t1")
    other = record("r2", "run-b", "succeeded", [outcome("kitchen", "g", 0, "switched", "run-b.int8", "int8")], "t2")
    html = rolled_out_section("run-a", [other, mine], lambda key: f"/o/{key}")
    assert "r1" in html and "r2" not in html and "kitchen" in html and "/o/rollouts/r1/report.html" in html
    assert "Not rolled out yet" in rolled_out_section("run-c", [other, mine], lambda key: key)
