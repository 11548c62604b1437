"""Rollout decisions, as plain functions: plan the device tasks, judge the canaries, pick a variant per device
class, and account for every device at the end. The ``edgeops_rollout`` DAG only wires these; the device
operations themselves live in the Airflow plugin (one SSH path).

Forward rollout of a blessed run:

1. **Plan.** The devices asked for (all by default) by wave; the lowest wave among them is the canary wave
   (wave 0 for a whole-fleet rollout; the new device itself when serving one new Pi). Canaries get every
   blessed variant, with the gate's choice (or the form's ``variant``) behind ``model.tflite``.
2. **Canary gate.** For each group, every variant is checked on each of the group's canaries against the
   group's budgets: p95 latency, peak RSS, and on-device accuracy on the shipped sample no more than
   ``accuracy_tolerance`` below the host's accuracy on the same images (evaluate records it per variant; the
   test-split accuracy only for manifests written before that), and never below the run's own floor
   ``gate.min_accuracy``. The group runs the passing variant with the best
   test-split accuracy; ties go to the smaller file, then the lower p95. A canary that did not deploy or
   benchmark, or a group with no passing variant, fails the gate: the canaries are switched back. A group with a
   ``traffic_canary`` is also judged on its canaries' real traffic (``tasks.fleet.traffic``); too little traffic
   leaves the decision to the benchmarks.
3. **Later waves** get their group's variant (only that file). A group with no canary in this rollout gets
   the gate's choice, and the record says it was not measured on that hardware.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from tasks.core.exceptions import ConfigError
from tasks.core.manifest import RunManifest
from tasks.core.modes import QUANT_MODES
from tasks.core.results import ArtifactRef, BenchmarkResult, DeployResult
from tasks.fleet.inventory import Device, Inventory
from tasks.fleet.records import (
    ACTIONS,
    FORWARD,
    ROLLBACK,
    CanaryVerdict,
    DeviceHealth,
    DeviceOutcome,
    DeviceTask,
    GroupChoice,
    Outcome,
    RolloutPlan,
    RolloutRecord,
    RolloutStatus,
    SwitchResult,
    release_id,
)
from tasks.fleet.traffic import TrafficVerdict, gate_reasons


@dataclass(frozen=True)
class RolloutRequest:
    """The rollout form (or the asset event), validated on construction."""

    action: str = FORWARD
    run_id: str = ""  # forward: "" = the newest blessed run; rollback: "" = each device's previous release
    devices: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    variant: str = ""  # forward only: ship this variant everywhere instead of choosing per group
    waves: tuple[int, ...] = ()  # only these waves ("" = all)
    max_failed: int = 0

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ConfigError(f"action={self.action!r}: use one of {list(ACTIONS)}")
        if self.variant and self.variant not in QUANT_MODES:
            raise ConfigError(f"variant={self.variant!r}: use one of {list(QUANT_MODES)} (or leave it empty)")
        if self.variant and self.action == ROLLBACK:
            raise ConfigError("variant applies to a forward rollout; a rollback restores a whole release")
        if self.max_failed < 0:
            raise ConfigError(f"max_failed={self.max_failed}: must be >= 0")
        if any(w < 0 for w in self.waves):
            raise ConfigError(f"waves={list(self.waves)}: wave numbers are >= 0")


def select_targets(inventory: Inventory, request: RolloutRequest) -> tuple[Device, ...]:
    """The devices of the request; unknown names or an empty selection are one ConfigError."""
    chosen = inventory.select(list(request.devices), list(request.groups))
    if request.waves:
        chosen = tuple(d for d in chosen if d.wave in request.waves)
    if not chosen:
        raise ConfigError(f"no device matches devices={list(request.devices)} groups={list(request.groups)} "
                          f"waves={list(request.waves)}; see `edgeops fleet inventory`")
    return chosen


def plan_forward(inventory: Inventory, request: RolloutRequest, rollout_id: str, manifest: RunManifest,
                 manifest_ref: ArtifactRef | None = None) -> RolloutPlan:
    """Plan shipping the run of ``manifest`` (read from the version ``manifest_ref`` pins: the plan carries it,
    and every artifact ref in it names one version too); a run whose gate blessed nothing is a ConfigError."""
    run_id = manifest.run_id
    verdict = manifest.verdict
    if not verdict.blessed:
        raise ConfigError(f"run {run_id} has no blessed model (its gate said: {'; '.join(verdict.reasons)}); "
                          "roll out a blessed run, or leave run_id empty for the newest one")
    if request.variant and request.variant not in verdict.deploy:
        raise ConfigError(f"variant {request.variant!r} was not blessed in run {run_id}; blessed: "
                          f"{list(verdict.deploy)}")
    targets = select_targets(inventory, request)
    first = min(d.wave for d in targets)
    default = request.variant or verdict.current or verdict.deploy[0]
    candidates = (request.variant,) if request.variant else tuple(verdict.deploy)

    def task(d: Device, variant: str, bench: tuple[str, ...]) -> DeviceTask:
        return DeviceTask(device=d.name, group=d.group, wave=d.wave, connection=d.connection,
                          runtime=inventory.group(d.group).runtime,
                          release=release_id(run_id, variant), run_id=run_id, modes=tuple(verdict.deploy),
                          current=variant, bench_modes=bench, optional=d.optional, app=inventory.group(d.group).app)

    groups = {d.group for d in targets}
    return RolloutPlan(
        rollout_id=rollout_id, action=FORWARD, run_id=run_id, config=manifest.config, verdict=verdict,
        canary=tuple(task(d, default, candidates) for d in targets if d.wave == first),
        later=tuple(task(d, default, (default,)) for d in targets if d.wave != first),
        budgets={g: dataclasses.asdict(inventory.group(g).budgets) for g in sorted(groups)},
        traffic={g: t for g in sorted(groups) if (t := inventory.group(g).traffic_canary) is not None},
        host_accuracy={m: v.accuracy if v.sample_accuracy is None else v.sample_accuracy
                       for m, v in manifest.variants.items()},
        test_accuracy={m: v.accuracy for m, v in manifest.variants.items()},
        forced_variant=request.variant, max_failed=request.max_failed, manifest=manifest_ref,
    )


def plan_rollback(inventory: Inventory, request: RolloutRequest, rollout_id: str, config: dict[str, Any],
                  previous: dict[str, str | None], to_release: dict[str, str | None]) -> RolloutPlan:
    """Plan switching each device back: to ``to_release[device]`` (found on the device by the caller for
    ``--to RUN_ID``) or, without a target run, to ``previous[device]``: the release it ran before the most
    recent rollout that changed it (``tasks.fleet.history.previous_release``)."""
    tasks = []
    for d in select_targets(inventory, request):
        if request.run_id:
            target = to_release.get(d.name)
            if not target:
                raise ConfigError(f"device {d.name} keeps no release of run {request.run_id}: pick a run it "
                                  "still has (`edgeops fleet status --check` lists them)")
        else:
            target = previous.get(d.name)
            if not target:
                raise ConfigError(f"device {d.name} has no previous release recorded to roll back to; "
                                  "name one with run_id")
        tasks.append(DeviceTask(device=d.name, group=d.group, wave=d.wave, connection=d.connection,
                                runtime=inventory.group(d.group).runtime, release=target, optional=d.optional,
                                app=inventory.group(d.group).app))
    return RolloutPlan(rollout_id=rollout_id, action=ROLLBACK, run_id=request.run_id, config=config,
                       switches=tuple(tasks), max_failed=request.max_failed)


# --- canary gate ----------------------------------------------------------------------------------------------
def check_variant(plan: RolloutPlan, group: str, variant: str, bench: BenchmarkResult) -> DeviceHealth:
    """One canary against its group's budgets for one variant; every failed budget is a reason."""
    budgets = plan.budgets[group]
    measured = bench.models.get(variant)
    if measured is None:
        return DeviceHealth(bench.device, variant, False, (f"{variant} was not benchmarked on {bench.device}",))
    p95 = float(measured.latency_ms["p95"])
    host = plan.host_accuracy.get(variant)
    reasons = []
    if p95 > budgets["p95_latency_ms"]:
        reasons.append(f"{variant} on {bench.device}: p95 {p95:.3f} ms > budget {budgets['p95_latency_ms']} ms")
    if measured.peak_rss_mb > budgets["peak_rss_mb"]:
        reasons.append(f"{variant} on {bench.device}: peak RSS {measured.peak_rss_mb:.1f} MB > budget "
                       f"{budgets['peak_rss_mb']} MB")
    if host is not None and measured.accuracy < host - budgets["accuracy_tolerance"]:
        reasons.append(f"{variant} on {bench.device}: accuracy {measured.accuracy:.4f} < host {host:.4f} - "
                       f"tolerance {budgets['accuracy_tolerance']}")
    floor = plan.verdict.min_accuracy if plan.verdict else 0.0
    if measured.accuracy < floor:  # the run's own floor holds on the device too, whatever the host measured
        reasons.append(f"{variant} on {bench.device}: accuracy {measured.accuracy:.4f} on the sample < the run's "
                       f"floor gate.min_accuracy={floor:.4f}")
    return DeviceHealth(bench.device, variant, not reasons, tuple(reasons), p95, measured.peak_rss_mb,
                        measured.accuracy, host)


def choose_variant(plan: RolloutPlan, group: str, benches: list[BenchmarkResult],
                   candidates: Iterable[str]) -> GroupChoice:
    """Among the variants within the group's budgets on every canary, the most accurate; ties: smaller file,
    then lower p95. Accuracy is the host-measured one on the whole test split when known (the same file gives
    the same predictions; the device sample is a few dozen images, too few to rank variants by), else the
    worst canary's; the on-device accuracy has already been checked against it within the tolerance."""
    health = [check_variant(plan, group, v, b) for v in candidates for b in benches]
    passing = [v for v in candidates if all(h.healthy for h in health if h.variant == v)]
    on = tuple(b.device for b in benches)
    if not passing:
        return GroupChoice(group, None, tuple(r for h in health for r in h.reasons), on, tuple(health))

    def rank(v: str) -> tuple[float, int, float]:
        rows = [h for h in health if h.variant == v]
        size = min(b.models[v].size_bytes for b in benches)
        accuracy = plan.test_accuracy.get(v, min(h.accuracy or 0.0 for h in rows))
        return (-accuracy, size, max(h.p95_ms or 0.0 for h in rows))

    best = sorted(passing, key=rank)[0]
    acc, size, p95 = rank(best)
    device_acc = min(h.accuracy or 0.0 for h in health if h.variant == best)
    why = (f"{best}: test accuracy {-acc:.4f} (on {', '.join(on)}: {device_acc:.4f} on the sample, p95 {p95:.3f} "
           f"ms), {size} bytes; the most accurate of {len(passing)} variant(s) within the budgets (ties: smaller, "
           "then faster)")
    rejected = tuple(r for h in health if h.variant not in passing for r in h.reasons)
    return GroupChoice(group, best, (why, *rejected), on, tuple(health))


def canary_gate(plan: RolloutPlan, deploys: list[DeployResult], benches: list[BenchmarkResult],
                traffic: Iterable[TrafficVerdict] = ()) -> CanaryVerdict:
    """Judge wave 0 from its deploy and benchmark results, and for groups with a traffic canary from the verdicts
    on its real traffic (``tasks.fleet.traffic``); say what to promote, deploy or roll back."""
    deployed = {r.device: r for r in deploys}
    benched = {b.device: b for b in benches if b.device in deployed}
    traffic = tuple(traffic)
    reasons = [f"canary {t.device} failed after the switch: {deployed[t.device].app_failure}"
               for t in plan.canary if t.device in deployed and deployed[t.device].app_failure]
    reasons += gate_reasons(plan.traffic, [(t.device, t.group) for t in plan.canary
                                           if t.device in deployed and not deployed[t.device].app_failure], traffic)
    reasons += [f"canary {t.device} did not deploy or benchmark (see its deploy/benchmark task log)"
                for t in plan.canary if t.device not in benched and not t.optional
                and not (t.device in deployed and deployed[t.device].app_failure)]
    candidates = plan.canary[0].bench_modes
    choices: dict[str, GroupChoice] = {}
    for group in sorted({t.group for t in plan.canary}):
        measured = [benched[t.device] for t in plan.canary if t.group == group and t.device in benched]
        if measured:
            choices[group] = choose_variant(plan, group, measured, candidates)
            if choices[group].variant is None:
                reasons.append(f"group {group}: no variant meets its budgets on its canaries")
    default = plan.canary[0].current
    for group in sorted({t.group for t in plan.later} - set(choices)):
        choices[group] = GroupChoice(group, default, (f"no canary of group {group} in this rollout: the gate's "
                                                      f"choice {default}, not measured on this hardware",))
    if reasons:
        back = tuple(dataclasses.replace(t, release=deployed[t.device].previous, modes=(), current="", bench_modes=())
                     for t in plan.canary if t.device in deployed)
        return CanaryVerdict(False, tuple(reasons), choices, rollback=back, traffic=traffic)

    def ship(t: DeviceTask) -> DeviceTask:
        variant = choices[t.group].variant or default
        return dataclasses.replace(t, release=release_id(plan.run_id, variant), current=variant, bench_modes=(variant,))

    promote = tuple(ship(t) for t in plan.canary if t.device in deployed
                    and choices[t.group].variant not in (None, deployed[t.device].current_variant))
    return CanaryVerdict(True, (), choices, promote=promote, later=tuple(ship(t) for t in plan.later),
                         traffic=traffic)


# --- the record -----------------------------------------------------------------------------------------------
def _not_switched(t: DeviceTask, plan: RolloutPlan, later_planned: set[str]) -> tuple[Outcome, str]:
    """(status, note) of a device the rollout did not switch: failed, skipped or not reached. Only a deploy
    skips an optional device; a rollback asked for by name fails like any other."""
    if not (t in plan.canary or t in plan.switches or t.device in later_planned):
        return Outcome.NOT_REACHED, ""
    if t.optional and t not in plan.switches:
        return Outcome.SKIPPED, "optional device not deployed (offline, or see its task log); not counted as failed"
    return Outcome.FAILED, "deploy/switch failed or device unreachable: state is stale"


def build_record(plan: RolloutPlan, verdict: CanaryVerdict | None, deploys: list[DeployResult],
                 rollbacks: list[SwitchResult], benches: list[BenchmarkResult], airflow_run_id: str,
                 created_at: str) -> RolloutRecord:
    """Account for every device of the plan: switched, rolled back, failed or not reached, and the status.

    ``deploys`` lists the canary deploys first, then promotions and later waves (a later entry wins)."""
    last = {d.device: SwitchResult(d.device, d.previous if d.app_failure else d.release, d.previous,
                                   d.current_variant, d.arch, d.reused, dict(d.options), d.app_failure)
            for d in deploys}
    back = {s.device: s for s in rollbacks}
    benched = {b.device: b for b in benches}
    later_planned = {t.device for t in (verdict.later if verdict else ())}
    outcomes, failed = [], []
    for t in (*plan.canary, *plan.later, *plan.switches):
        if t.device in back and back[t.device].app_failure:  # the rollback target failed activate/health
            s, status, note = back[t.device], Outcome.FAILED, f"rollback: {back[t.device].app_failure}"
            failed.append(t.device)
        elif t.device in back:
            why = "canary gate failed: switched back" if plan.action == FORWARD else "rolled back on request"
            why = last[t.device].app_failure if t.device in last and last[t.device].app_failure else why
            s, status, note = back[t.device], Outcome.ROLLED_BACK, why
        elif t.device in last and last[t.device].app_failure:  # activate/health failed: switched back
            s, status, note = last[t.device], Outcome.ROLLED_BACK, last[t.device].app_failure
            failed.append(t.device)
        elif t.device in last:
            s, status, note = last[t.device], Outcome.SWITCHED, ""
        else:
            s, status, note = None, *_not_switched(t, plan, later_planned)
            if status == Outcome.FAILED:
                failed.append(t.device)
        b = benched.get(t.device)
        outcomes.append(DeviceOutcome(
            device=t.device, group=t.group, wave=t.wave, status=status, release=s.release if s else None,
            variant=s.variant if s else None, bench=dict(b.models) if b else {},
            bench_record=b.record if b else None, label=b.label if b else "", note=note))
    reasons = list(verdict.reasons) if verdict else []
    if verdict is not None and not verdict.healthy:
        status = RolloutStatus.CANARY_FAILED
    elif plan.action == ROLLBACK and failed:
        status = RolloutStatus.FAILED
        reasons.append(f"rollback failed on {failed} (see their rollback task logs)")
    elif len(failed) > plan.max_failed or any(t.device in failed for t in plan.canary):
        status = RolloutStatus.FAILED
        reasons.append(f"{len(failed)} device(s) failed: {failed} (max_failed={plan.max_failed})")
    else:
        status = RolloutStatus.SUCCEEDED
        if failed:
            reasons.append(f"{len(failed)} device(s) failed within max_failed={plan.max_failed}: {failed}")
    return RolloutRecord(rollout_id=plan.rollout_id, action=plan.action, run_id=plan.run_id, status=status,
                         reasons=tuple(reasons), devices=tuple(outcomes),
                         choices=dict(verdict.choices) if verdict else {}, created_at=created_at,
                         airflow_run_id=airflow_run_id, traffic=verdict.traffic if verdict else ())
