"""The rollout report: a canary that failed its budgets, and a rollout that succeeded."""

from __future__ import annotations

from html import escape

import pytest

from tasks.core import keys
from tasks.fleet.records import DeviceHealth, GroupChoice
from tasks.fleet.report import render_rollout_html, write_rollout_report
from tests.tasks.fleet.builders import outcome, record

BUDGETS = {"pi4": {"p95_latency_ms": 20.0, "peak_rss_mb": 200.0, "accuracy_tolerance": 0.02}}
SLOW = "int8 on kitchen: p95 31.500 ms > budget 20.0 ms"


def _canary_failed():
    health = (DeviceHealth("kitchen", "int8", False, (SLOW,), 31.5, 80.0, 0.96, 0.97),
              DeviceHealth("kitchen", "fp16", False, ("fp16 on kitchen: peak RSS 250.0 MB > budget 200.0 MB",),
                           12.0, 250.0, 0.97, 0.97))
    choice = GroupChoice("pi4", None, tuple(r for h in health for r in h.reasons), ("kitchen",), health)
    devices = [outcome("kitchen", "pi4", 0, "rolled_back", "run-a.int8", "int8", p50=22.5,
                       note="canary gate failed: switched back"),
               outcome("garage", "pi4", 1, "not_reached")]
    return record("r-bad", "run-b", "canary_failed", devices, "2026-01-02T03:00:00+00:00",
                  reasons=("group pi4: no variant meets its budgets on its canaries",), choices={"pi4": choice})


def _succeeded():
    health = (DeviceHealth("kitchen", "int8", True, (), 9.0, 70.0, 0.965, 0.97),)
    choice = GroupChoice("pi4", "int8", ("int8: accuracy 0.9650 on kitchen, p95 9.000 ms, 50000 bytes",),
                         ("kitchen",), health)
    other = GroupChoice("pi5", "int8", ("no canary of group pi5 in this rollout: the gate's choice int8, not "
                                        "measured on this hardware",))
    devices = [outcome("kitchen", "pi4", 0, "switched", "run-b.int8", "int8", p50=6.5),
               outcome("attic", "pi5", 1, "switched", "run-b.int8", "int8", label="native", p50=41.0),
               outcome("porch", "pi5", 2, "failed", note="deploy/switch failed or device unreachable: state is stale")]
    return record("r-good", "run-b", "succeeded", devices, "2026-01-03T03:00:00+00:00",
                  reasons=("1 device(s) failed within max_failed=1: ['porch']",),
                  choices={"pi4": choice, "pi5": other}, airflow_run_id="manual__x")


def test_canary_failed_shows_why() -> None:
    page = render_rollout_html(_canary_failed(), BUDGETS)
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert '<span class="fail">CANARY FAILED</span>' in page
    assert "no variant meets its budgets on its canaries" in page
    assert "Group pi4: none: no variant meets the budgets (measured on kitchen)" in page
    assert "p95 &le; 20 ms, peak RSS &le; 200 MB" in page
    assert page.count(escape(SLOW)) == 2  # the group's reasons and the health row
    assert "31.500" in page and "250.0" in page and "-1.00 pp" in page  # p95, RSS, accuracy vs host
    assert "rolled back" in page and "not reached" in page and "canary gate failed: switched back" in page
    assert "22.500" in page and "not Raspberry Pi figures" in " ".join(page.split())
    assert "http://" not in page and "https://" not in page


def test_succeeded_shows_choices_outcomes_and_benchmarks() -> None:
    page = render_rollout_html(_succeeded())
    assert '<span class="pass">SUCCEEDED</span>' in page and "within max_failed=1" in page
    assert "Group pi4: int8 (measured on kitchen)" in page and "int8 (chosen)" in page
    assert "Group pi5: int8 (not measured)" in page and "not measured on this hardware" in page
    assert '<span class="pass">switched</span>' in page and '<span class="fail">failed</span>' in page
    assert "state is stale" in page and "Budgets:" not in page
    assert page.count('<td class="l">attic</td>') == 2  # outcome row + benchmark row
    assert "native" in page and "41.000" in page and "manual__x" in page


def test_text_is_escaped() -> None:
    rec = _succeeded()
    bad = record("<script>x</script>", "run-b", "failed", [outcome("<b>evil</b>", "pi4", 0, "failed")], "",
                 reasons=("<img src=x onerror=alert(1)>",), choices=rec.choices)
    page = render_rollout_html(bad)
    assert "<script>" not in page and "<b>evil</b>" not in page and "onerror=alert(1)>" not in page
    assert "&lt;script&gt;" in page


@pytest.mark.integration
def test_write_rollout_report(fleet_store) -> None:
    rec = _canary_failed()
    art = write_rollout_report(fleet_store, rec, BUDGETS)
    assert art.key == keys.rollout_report("r-bad") == "rollouts/r-bad/report.html"
    assert fleet_store.get_bytes(art.key).decode() == render_rollout_html(rec, BUDGETS)
    head = fleet_store.client.head_object(Bucket=fleet_store.bucket, Key=art.key)
    assert head["ContentType"].startswith("text/html") and head["Metadata"]["sha256"] == art.sha256
