"""The traffic canary's judgement: thresholds, too little traffic, the confidence drop vs the previous release, its
settings in the fleet file, and how the canary gate, the record and the report use its verdicts."""

from __future__ import annotations

import pytest

from tasks.core.exceptions import ConfigError
from tasks.fleet.inventory import Inventory
from tasks.fleet.records import RolloutRecord
from tasks.fleet.report import render_rollout_html
from tasks.fleet.rollout import RolloutRequest, build_record, canary_gate, plan_forward
from tasks.fleet.traffic import (
    FAILED,
    NO_TRAFFIC,
    PASSED,
    TrafficCanary,
    TrafficFigures,
    TrafficVerdict,
    figures,
    judge,
    ready,
)
from tests.tasks.fleet.test_rollout import _bench, _deployed, _manifest

SETTINGS = TrafficCanary(min_requests=100, max_wait_s=600, max_error_rate=0.02, max_p95_ms=20,
                         max_confidence_drop=0.05)
SPEC = {"min_requests": 100, "max_wait_s": 600, "max_error_rate": 0.02, "max_p95_ms": 20, "max_confidence_drop": 0.05}


def _bins(at: int, n: int) -> tuple[int, ...]:
    """n predictions, all in confidence bin ``at`` (bin i holds [i/10, (i+1)/10))."""
    return tuple(n if i == at else 0 for i in range(10))


def _fig(requests: int = 500, errors: int = 0, bad: int = 0, p95: float | None = 8.0, bin_: int = 9):
    return TrafficFigures(requests, errors, bad, p95, _bins(bin_, requests - errors - bad), 1)


def _judge(new: TrafficFigures, old: TrafficFigures | None = None, previous: str | None = "run0.int8",
           settings: TrafficCanary = SETTINGS) -> TrafficVerdict:
    return judge(settings, "pi1", "sim", "run1.int8", previous, new, old, waited_s=42.0)


def _doc(requests: int, written_at: str, p95: float | None = 5.0, bins: tuple[int, ...] | None = None,
         errors: int = 0, bad: int = 0) -> dict:
    return {"schema": 1, "release": "r", "written_at": written_at, "period_start": written_at[:11] + "0000Z",
            "requests": requests, "errors": errors,
            "bad_requests": bad, "latency_ms": {"p50": 1.0, "p95": p95, "p99": p95},
            "classes": {}, "confidence_bins": list(bins or _bins(9, requests - errors - bad)), "final": False}


def test_within_every_threshold_it_passes_and_says_what_it_measured():
    v = _judge(_fig(), _fig(bin_=9))
    assert v.status == PASSED and v.healthy, v.reasons
    assert any("500 requests" in r for r in v.reasons)
    assert any("drop +0.000 <= 0.05" in r for r in v.reasons), v.reasons


@pytest.mark.parametrize(("new", "needle"), [
    (_fig(errors=5, bad=6), "error rate 2.20% (5 errors + 6 bad requests of 500) > 2.00%"),
    (_fig(bad=20), "20 bad requests"),  # bodies the new release refuses count: the app's frames broke
    (_fig(p95=25.0), "served p95 25.000 ms > 20 ms"),
])
def test_each_threshold_missed_fails_with_its_figure(new, needle):
    v = _judge(new, _fig())
    assert v.status == FAILED and not v.healthy
    assert any(needle in r for r in v.reasons), v.reasons


def test_the_confidence_drop_is_against_the_previous_release_on_the_device():
    v = _judge(_fig(bin_=8), _fig(bin_=9))  # 0.85 vs 0.95: a drop of 0.10
    assert v.status == FAILED and any("mean confidence 0.850 vs 0.950 on run0.int8: drop +0.100 > 0.05" in r
                                      for r in v.reasons), v.reasons
    assert _judge(_fig(bin_=9), _fig(bin_=8)).status == PASSED  # more confident than before: fine


def test_without_a_previous_release_or_its_traffic_the_confidence_is_not_compared():
    for old, previous, why in ((None, None, "no previous release"), (None, "run1.int8", "no previous release"),
                               (_fig(requests=0), "run0.int8", "no classified request of run0.int8")):
        v = _judge(_fig(bin_=1), old, previous)
        assert v.status == PASSED and any(f"confidence not compared: {why}" in r for r in v.reasons), v.reasons


def test_too_little_traffic_says_so_and_leaves_the_decision_to_the_benchmarks():
    v = _judge(_fig(requests=37, errors=30))  # bad figures, but too few requests to judge them
    assert v.status == NO_TRAFFIC and v.healthy
    assert v.reasons == ("no traffic: 37 of 100 requests of run1.int8 on pi1 after 42 s, benchmark gate decides",)


def test_ready_after_min_requests_or_max_wait():
    assert ready(SETTINGS, _fig(requests=100), 1.0)
    assert not ready(SETTINGS, _fig(requests=99), 599.0)
    assert ready(SETTINGS, _fig(requests=0), 600.0)


def test_figures_sum_files_written_since_the_switch_worst_p95():
    docs = [_doc(50, "20260101T000000Z", p95=99.0), _doc(30, "20260101T010005Z", p95=4.0, errors=2),
            _doc(20, "20260101T010010Z", p95=6.0, bad=1), {"schema": 2, "written_at": "20270101T000000Z"},
            {**_doc(70, "20260101T010020Z"), "release": "another"}]
    f = figures("r", docs, written_since="20260101T010000Z")
    assert (f.requests, f.errors, f.bad_requests, f.latency_p95_ms, f.files) == (50, 2, 1, 6.0, 2)
    assert sum(f.confidence_bins) == 47 and f.mean_confidence == pytest.approx(0.95)
    assert figures("r", docs).requests == 100 and figures("r", []).mean_confidence is None


def test_figures_count_only_the_latest_activation_of_the_release():
    """Rolled back and out again within the hour: the earlier activation's window (good traffic, final at the
    swap, written after the switch) must not dilute this one's (half of it bad requests)."""
    earlier = {**_doc(800, "20260101T010003Z"), "activated": "20260101T004000Z", "final": True}
    this = {**_doc(60, "20260101T010010Z", bad=30), "activated": "20260101T010001Z"}
    f = figures("r", [earlier, this], written_since="20260101T010000Z")
    assert (f.requests, f.bad_requests, f.files) == (60, 30, 1) and f.failure_rate == 0.5


@pytest.mark.parametrize(("spec", "match"), [
    ({**SPEC, "min_requests": 0}, "min_requests=0"),
    ({**SPEC, "min_requests": 2.5}, "min_requests=2.5"),
    ({**SPEC, "max_error_rate": 1.5}, "max_error_rate=1.5"),
    ({**SPEC, "max_wait_s": 0}, "max_wait_s=0"),
    ({**SPEC, "max_p95_ms": True}, "every value must be a number"),
    ({k: v for k, v in SPEC.items() if k != "max_p95_ms"}, r"missing key\(s\) \['max_p95_ms'\]"),
    ({**SPEC, "threshold": 1}, r"unknown key\(s\) \['threshold'\]"),
])
def test_the_fleet_file_setting_is_validated_at_load(spec, match):
    raw = {"groups": {"g": {"budgets": {"p95_latency_ms": 1, "peak_rss_mb": 1, "accuracy_tolerance": 0},
                            "traffic_canary": spec}},
           "devices": [{"name": "a", "group": "g", "wave": 0}]}
    with pytest.raises(ConfigError, match=f"group 'g': traffic_canary.*{match}"):
        Inventory.from_dict(raw)


def _inventory(traffic: dict | None) -> Inventory:
    group = {"budgets": {"p95_latency_ms": 10, "peak_rss_mb": 100, "accuracy_tolerance": 0.02}}
    return Inventory.from_dict({
        "groups": {"fast": {**group, **({"traffic_canary": traffic} if traffic else {})}, "slow": group},
        "devices": [{"name": "a", "group": "fast", "wave": 0}, {"name": "c", "group": "slow", "wave": 0},
                    {"name": "b", "group": "fast", "wave": 1}]})


BENCH = {"fp16": (5.0, 0.95), "fp32": (6.0, 0.95), "int8": (2.0, 0.94)}


def _gate(verdicts: list[TrafficVerdict], traffic: dict | None = SPEC):
    plan = plan_forward(_inventory(traffic), RolloutRequest(), "r0", _manifest())
    deploys = [_deployed("a"), _deployed("c")]
    return plan, deploys, canary_gate(plan, deploys, [_bench("a", BENCH), _bench("c", BENCH)], verdicts)


def test_off_by_default_and_in_the_plan_only_for_groups_that_enable_it():
    assert _inventory(None).group("fast").traffic_canary is None
    plan, _, verdict = _gate([], traffic=None)
    assert plan.traffic == {} and verdict.healthy
    plan, _, _ = _gate([])
    assert plan.traffic == {"fast": SETTINGS}


def test_the_gate_stops_on_a_failed_traffic_verdict_and_it_reaches_the_record_and_report():
    bad = judge(SETTINGS, "a", "fast", "run1.int8", "old", _fig(bad=50), None, 30.0)
    plan, deploys, verdict = _gate([bad])
    assert not verdict.healthy and [t.device for t in verdict.rollback] == ["a", "c"]
    assert any(r.startswith("group fast: traffic canary failed on a: a: error rate 10.00%") for r in verdict.reasons)
    record = RolloutRecord.from_xcom(build_record(plan, verdict, deploys, [], [], "af", "t").to_xcom())
    assert record.status == "canary_failed" and record.traffic == (bad,)
    html = render_rollout_html(record)
    assert "Traffic canary" in html and "50 bad requests" in html and "failed" in html


def test_no_traffic_passes_the_gate_and_a_canary_not_judged_fails_it():
    quiet = judge(SETTINGS, "a", "fast", "run1.int8", "old", _fig(requests=3), None, 600.0)
    _, _, verdict = _gate([quiet])
    assert verdict.healthy and verdict.traffic == (quiet,)
    _, _, verdict = _gate([])  # the sensor failed or timed out: nothing judged a
    assert not verdict.healthy
    assert verdict.reasons == ("group fast: the traffic canary did not judge a (see canary.traffic's log)",)
