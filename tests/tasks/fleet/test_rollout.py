"""Rollout decisions on crafted records: planning, the canary gate, the per-group variant and the record."""

from __future__ import annotations

import pytest

from tasks.core.exceptions import ConfigError
from tasks.core.manifest import RunManifest
from tasks.core.results import ArtifactRef, BenchmarkResult, DeployResult, ModelBench
from tasks.core.verdict import GateVerdict, VariantVerdict
from tasks.fleet.inventory import Inventory
from tasks.fleet.records import SwitchResult, release_id
from tasks.fleet.rollout import RolloutRequest, build_record, canary_gate, plan_forward, plan_rollback
from tests.tasks.manifests import manifest, variant

RUN = "run1"
REF = ArtifactRef("s3://artifacts/x", "0" * 64, 1)
HOST = {"fp32": 0.95, "int8": 0.94, "fp16": 0.95}
SIZES = {"fp32": 4000, "fp16": 2000, "int8": 1000}


def _inventory(p95: float = 10.0) -> Inventory:
    return Inventory.from_dict({
        "groups": {"fast": {"threads": 2, "budgets": {"p95_latency_ms": p95, "peak_rss_mb": 100,
                                                      "accuracy_tolerance": 0.02}},
                   "slow": {"budgets": {"p95_latency_ms": 100, "peak_rss_mb": 100, "accuracy_tolerance": 0.02}}},
        "devices": [{"name": "a", "group": "fast", "wave": 0}, {"name": "b", "group": "fast", "wave": 1},
                    {"name": "c", "group": "slow", "wave": 1}, {"name": "d", "group": "slow", "wave": 2}]})


def _manifest(blessed: bool = True, sample: dict[str, float] | None = None, floor: float = 0.0) -> RunManifest:
    """``sample``: variant -> accuracy on the device sample (absent: a manifest from before it was measured);
    ``floor``: the run's gate.min_accuracy."""
    modes = ("fp16", "fp32", "int8") if blessed else ()
    verdict = GateVerdict(blessed, modes, "int8" if blessed else None, () if blessed else ("floor",),
                          {m: VariantVerdict(True, 0.0) for m in SIZES}, {m: REF for m in SIZES}, REF, 1.0,
                          min_accuracy=floor)
    return manifest(RUN, {m: variant(a, sample_accuracy=(sample or {}).get(m)) for m, a in HOST.items()},
                    gate=verdict, config={})


def _bench(device: str, figures: dict[str, tuple[float, float]]) -> BenchmarkResult:
    """figures: variant -> (p95 ms, accuracy)."""
    models = {m: ModelBench({"p50": p / 2, "p95": p, "p99": p}, acc, 1.0, 50.0, 32, "float32", SIZES[m])
              for m, (p, acc) in figures.items()}
    return BenchmarkResult(device, "x86_64", release_id(RUN, "int8"), "int8", "host", REF, models)


def _deployed(device: str, variant: str = "int8", previous: str | None = "old") -> DeployResult:
    return DeployResult(device, "x86_64", release_id(RUN, variant), variant, previous, (variant,), (), {})


def test_the_canary_compares_with_the_host_on_the_same_sample_images():
    sample = {"int8": 0.8125}  # 32 images: far from the test split's 0.94
    plan = plan_forward(_inventory(), RolloutRequest(), "r0", _manifest(sample=sample))
    assert plan.host_accuracy["int8"] == 0.8125 and plan.test_accuracy["int8"] == 0.94
    assert plan.host_accuracy["fp32"] == 0.95  # an older manifest: the test-split accuracy
    sample["fp16"] = 0.0  # measured, even if zero: not the test split's
    assert plan_forward(_inventory(), RolloutRequest(), "r0", _manifest(sample=sample)).host_accuracy["fp16"] == 0.0


def test_plan_puts_the_lowest_wave_first_with_every_blessed_variant():
    plan = plan_forward(_inventory(), RolloutRequest(), "r1", _manifest())
    assert [t.device for t in plan.canary] == ["a"] and plan.canary[0].modes == ("fp16", "fp32", "int8")
    assert plan.canary[0].runtime.threads == 2 and plan.canary[0].release == f"{RUN}.int8"
    assert [t.device for t in plan.later] == ["b", "c", "d"]
    only_new = plan_forward(_inventory(), RolloutRequest(devices=("d",)), "r2", _manifest())
    assert [t.device for t in only_new.canary] == ["d"] and not only_new.later  # serving one new device


@pytest.mark.parametrize("request_, manifest, match", [
    (RolloutRequest(), _manifest(blessed=False), "no blessed model"),
    (RolloutRequest(devices=("zz",)), _manifest(), "unknown device 'zz'"),
    (RolloutRequest(groups=("gpu",)), _manifest(), "unknown group 'gpu'"),
    (RolloutRequest(variant="qat_int8"), _manifest(), "was not blessed"),
])
def test_bad_requests_fail_before_anything_is_touched(request_, manifest, match):
    with pytest.raises(ConfigError, match=match):
        plan_forward(_inventory(), request_, "r", manifest)


def test_request_validation():
    with pytest.raises(ConfigError, match="variant applies to a forward"):
        RolloutRequest(action="rollback", variant="int8")
    with pytest.raises(ConfigError, match="action="):
        RolloutRequest(action="sideways")


def test_the_canary_picks_the_most_accurate_variant_within_budget_per_group():
    plan = plan_forward(_inventory(p95=10.0), RolloutRequest(), "r", _manifest())
    bench = _bench("a", {"fp32": (20.0, 0.97), "fp16": (8.0, 0.95), "int8": (3.0, 0.95)})
    verdict = canary_gate(plan, [_deployed("a")], [bench])
    # fp32 is over budget; fp16 beats int8 on the test split (0.95 vs 0.94), whatever the 32-image sample says
    assert verdict.healthy and verdict.choices["fast"].variant == "fp16"
    assert any("p95 20.000 ms > budget 10.0" in r for r in verdict.choices["fast"].reasons)
    assert verdict.choices["slow"].variant == "int8" and "not measured" in verdict.choices["slow"].reasons[0]
    assert {t.device: t.release for t in verdict.later} == {"b": f"{RUN}.fp16", "c": f"{RUN}.int8",
                                                           "d": f"{RUN}.int8"}
    assert [t.release for t in verdict.promote] == [f"{RUN}.fp16"]  # the canary ran the gate's int8


def test_a_canary_choice_other_than_its_release_is_promoted():
    plan = plan_forward(_inventory(), RolloutRequest(), "r", _manifest())
    bench = _bench("a", {"fp32": (5.0, 0.97), "fp16": (5.0, 0.95), "int8": (3.0, 0.90)})  # int8 off on the device
    verdict = canary_gate(plan, [_deployed("a")], [bench])
    assert verdict.choices["fast"].variant == "fp16"  # ties with fp32 on the test split: the smaller file
    assert [(t.device, t.release, t.bench_modes) for t in verdict.promote] == [("a", f"{RUN}.fp16", ("fp16",))]
    assert verdict.promote[0].modes == plan.canary[0].modes  # a release id always means the same files


def test_the_canary_holds_the_runs_own_accuracy_floor_on_the_device():
    """Within the tolerance of the host's sample accuracy is not enough: the run's gate.min_accuracy holds too."""
    plan = plan_forward(_inventory(), RolloutRequest(), "r", _manifest(sample={"int8": 0.86, "fp16": 0.95,
                                                                                "fp32": 0.95}, floor=0.9))
    bench = _bench("a", {"fp32": (50.0, 0.95), "fp16": (50.0, 0.95), "int8": (3.0, 0.85)})  # int8 0.86 - 0.01
    verdict = canary_gate(plan, [_deployed("a")], [bench])
    int8 = [h for h in verdict.choices["fast"].health if h.variant == "int8"]
    assert int8 and not int8[0].healthy
    assert any("0.8500 on the sample < the run's floor gate.min_accuracy=0.9000" in r for r in int8[0].reasons)
    assert not verdict.healthy  # fast's only other variants are over the p95 budget


def test_no_variant_within_budget_fails_the_canary_and_switches_it_back():
    plan = plan_forward(_inventory(p95=0.001), RolloutRequest(), "r", _manifest())
    bench = _bench("a", {m: (3.0, 0.95) for m in SIZES})
    verdict = canary_gate(plan, [_deployed("a", previous="old")], [bench])
    assert not verdict.healthy and not verdict.later
    assert [(t.device, t.release) for t in verdict.rollback] == [("a", "old")]
    record = build_record(plan, verdict, [_deployed("a")], [SwitchResult("a", "old", f"{RUN}.int8", None)],
                          [bench], "air", "now")
    assert record.status == "canary_failed"
    assert {d.device: d.status for d in record.devices} == {"a": "rolled_back", "b": "not_reached",
                                                            "c": "not_reached", "d": "not_reached"}


def test_a_canary_that_did_not_deploy_fails_the_gate():
    plan = plan_forward(_inventory(), RolloutRequest(), "r", _manifest())
    verdict = canary_gate(plan, [], [])
    assert not verdict.healthy and "canary a did not deploy" in verdict.reasons[0]


def test_later_wave_failures_within_max_failed_still_succeed():
    plan = plan_forward(_inventory(), RolloutRequest(max_failed=1), "r", _manifest())
    bench = _bench("a", {m: (3.0, 0.95) for m in SIZES})
    verdict = canary_gate(plan, [_deployed("a")], [bench])
    deploys = [_deployed(d) for d in ("a", "b", "c")]  # d is offline
    record = build_record(plan, verdict, deploys, [], [bench], "air", "now")
    assert record.status == "succeeded" and "within max_failed=1" in record.reasons[-1]
    assert {d.device: d.status for d in record.devices}["d"] == "failed"
    strict = plan_forward(_inventory(), RolloutRequest(), "r", _manifest())
    assert build_record(strict, canary_gate(strict, [_deployed("a")], [bench]), deploys, [], [bench], "a",
                        "n").status == "failed"


def test_an_optional_device_not_deployed_is_skipped_not_failed():
    inv = Inventory.from_dict({
        "groups": {"fast": {"budgets": {"p95_latency_ms": 10, "peak_rss_mb": 100, "accuracy_tolerance": 0.02}}},
        "devices": [{"name": "a", "group": "fast", "wave": 0},
                    {"name": "e", "group": "fast", "wave": 1, "optional": True}]})
    plan = plan_forward(inv, RolloutRequest(), "r", _manifest())
    bench = _bench("a", {m: (3.0, 0.95) for m in SIZES})
    record = build_record(plan, canary_gate(plan, [_deployed("a")], [bench]), [_deployed("a")], [], [bench], "a", "n")
    assert record.status == "succeeded" and not any("failed" in r for r in record.reasons)
    outcome = {d.device: d for d in record.devices}["e"]
    assert outcome.status == "skipped" and "optional" in outcome.note
    back = plan_rollback(inv, RolloutRequest(action="rollback", devices=("e",)), "r", {}, {"e": "older"}, {})
    failed = build_record(back, None, [], [], [], "a", "n")  # its rollback did not happen
    assert failed.status == "failed" and [d.status for d in failed.devices] == ["failed"]


def test_rollback_needs_a_known_previous_release():
    inv = _inventory()
    plan = plan_rollback(inv, RolloutRequest(action="rollback", devices=("b",)), "r", {},
                         {"b": "older"}, {})
    assert [(t.device, t.release) for t in plan.switches] == [("b", "older")]
    with pytest.raises(ConfigError, match="no previous release recorded"):
        plan_rollback(inv, RolloutRequest(action="rollback", devices=("b",)), "r", {}, {"b": None}, {})
    with pytest.raises(ConfigError, match="keeps no release of run old"):
        plan_rollback(inv, RolloutRequest(action="rollback", run_id="old", devices=("b",)), "r", {}, {}, {"b": None})


def test_a_device_whose_health_failed_is_switched_back_and_the_record_names_the_step():
    import dataclasses

    plan = plan_forward(_inventory(), RolloutRequest(max_failed=1), "r", _manifest())
    bench = _bench("a", {m: (3.0, 0.95) for m in SIZES})
    why = "health: /healthz still serves old after 20 s; current switched back to old"
    sick = dataclasses.replace(_deployed("a"), app_failure=why)
    verdict = canary_gate(plan, [sick], [])
    assert not verdict.healthy and verdict.reasons == (f"canary a failed after the switch: {why}",)
    later = canary_gate(plan, [_deployed("a")], [bench])
    record = build_record(plan, later, [_deployed("a"), dataclasses.replace(_deployed("b"), app_failure=why),
                                        _deployed("c"), _deployed("d")], [], [bench], "air", "now")
    b = {d.device: d for d in record.devices}["b"]
    assert (b.status, b.release, b.note) == ("rolled_back", "old", why)
    assert record.status == "succeeded" and "['b']" in record.reasons[-1]  # counted against max_failed
    assert plan.canary[0].app == _inventory().group("fast").app


def test_a_canary_whose_health_failed_keeps_the_failed_step_in_its_note_after_the_gate_switch_back():
    """The deploy switched the canary back (health failed), the gate then switches it back once more (to where
    it already is): the device's note names the step, not only the gate."""
    import dataclasses

    plan = plan_forward(_inventory(), RolloutRequest(), "r", _manifest())
    why = "health: `false` exited 1; current switched back to old"
    sick = dataclasses.replace(_deployed("a"), app_failure=why)
    verdict = canary_gate(plan, [sick], [])
    record = build_record(plan, verdict, [sick], [SwitchResult("a", "old", "old", None)], [], "air", "now")
    a = {d.device: d for d in record.devices}["a"]
    assert (record.status, a.status, a.release, a.note) == ("canary_failed", "rolled_back", "old", why)
