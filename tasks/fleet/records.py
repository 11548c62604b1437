"""The rollout's declared hand-offs: plan -> device tasks -> canary verdict -> rollout record, device state.

Same contract as ``tasks/core/results.py``: frozen dataclasses, ``to_xcom()`` on the producer side and
``Type.from_xcom()`` on the consumer side. The two records written to the store:

* ``rollouts/<rollout_id>/record.json`` (``RolloutRecord``), written last by the rollout run;
* ``devices/<name>/state.json`` (``DeviceState``), written by the device operator at every switch of
  ``current``, so ``edgeops fleet status`` knows what each device runs without connecting to it (the bucket is
  versioned: older versions are the device's history).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from tasks.core.exceptions import RecordError
from tasks.core.results import ArtifactRef, ModelBench, Record
from tasks.core.verdict import GateVerdict
from tasks.device.app import AppHooks
from tasks.device.runtime import RuntimeOptions
from tasks.fleet.traffic import TrafficCanary, TrafficVerdict

FORWARD, ROLLBACK = "forward", "rollback"
ACTIONS = (FORWARD, ROLLBACK)


class Outcome(StrEnum):
    """What a rollout did to one device (``DeviceOutcome.status``); the values are what records on disk hold."""

    SWITCHED = "switched"  # current points at the planned release
    ROLLED_BACK = "rolled_back"  # switched back: a failed canary, or a rollback on request
    FAILED = "failed"  # the deploy or switch failed, or the device was unreachable: its state is stale
    SKIPPED = "skipped"  # an optional device not deployed (offline): not counted as failed
    NOT_REACHED = "not_reached"  # the rollout stopped before the device's wave


class SwitchAction(StrEnum):
    """Why a device's ``current`` moved (``DeviceState.action``); the values are what records on disk hold."""

    DEPLOY = "deploy"  # a forward rollout's deploy (canary or later wave)
    PROMOTE = "promote"  # a canary re-deployed with its group's chosen variant
    ROLLBACK = "rollback"  # switched back: a failed canary, or a rollback on request


class RolloutStatus(StrEnum):
    """How a rollout ended (``RolloutRecord.status``); the values are what records on disk hold."""

    SUCCEEDED = "succeeded"
    CANARY_FAILED = "canary_failed"  # the canary gate stopped it: the canaries were switched back
    FAILED = "failed"  # a canary, a rollback target or more than max_failed later devices failed


def _as_enum(record: Record, name: str, kind: type[StrEnum]) -> None:
    """Store field ``name`` of a frozen record as ``kind`` (records read from disk hold plain strings)."""
    value = getattr(record, name)
    try:
        object.__setattr__(record, name, kind(value))
    except ValueError:
        raise RecordError(f"{type(record).__name__}.{name}={value!r}: expected one of "
                          f"{[k.value for k in kind]}") from None


def release_id(run_id: str, variant: str) -> str:
    """A release is one run's blessed variants with one of them behind ``model.tflite``: releases stay
    immutable (same id, same files) while different device classes run different variants of the same run."""
    return f"{run_id}.{variant}"


@dataclass(frozen=True)
class DeviceTask(Record):
    """One device operation of a rollout (a mapped task): put ``release`` there, or switch back to it."""

    device: str
    group: str
    wave: int
    connection: str  # the device's Airflow SSH connection id, as the inventory resolved it
    runtime: RuntimeOptions  # its group's threads and delegate
    release: str | None  # deploy: the release to create; switch: the release to make current (None = none)
    run_id: str = ""  # the run whose model ships ("" for a switch to a release by name)
    modes: tuple[str, ...] = ()  # variants shipped: always every blessed variant, so a release id means one content
    current: str = ""  # the variant model.tflite points at (deploy only)
    bench_modes: tuple[str, ...] = ()  # variants benchmarked after the deploy (canary: every candidate)
    optional: bool = False  # an optional device may be unreachable without failing the rollout
    app: AppHooks = field(default_factory=AppHooks)  # its group's activate and health hooks

    def summary(self) -> str:
        return f"{self.device} [{self.group}, wave {self.wave}] -> {self.release or 'no release'}"


@dataclass(frozen=True)
class RolloutPlan(Record):
    """What the rollout's first task hands every later one; everything was validated there."""

    rollout_id: str
    action: str  # forward | rollback
    run_id: str  # forward: the run shipped; rollback: the run rolled back to ("" = each device's previous)
    config: dict[str, Any]  # the shipped run's resolved PipelineConfig (deploy and bench knobs)
    canary: tuple[DeviceTask, ...] = ()  # forward: the canary wave, every blessed variant shipped
    later: tuple[DeviceTask, ...] = ()  # forward: the later waves, before the canary picks their variant
    switches: tuple[DeviceTask, ...] = ()  # rollback: every device switched back
    budgets: dict[str, dict[str, float]] = field(default_factory=dict)  # group -> Budgets as a dict
    traffic: dict[str, TrafficCanary] = field(default_factory=dict)  # group -> its traffic canary (enabled only)
    host_accuracy: dict[str, float] = field(default_factory=dict)  # variant -> host accuracy on the device sample
    test_accuracy: dict[str, float] = field(default_factory=dict)  # variant -> host accuracy on the test split
    verdict: GateVerdict | None = None  # forward: the run's gate verdict (artifact refs, sample)
    manifest: ArtifactRef | None = None  # forward: the manifest version shipped (pinned before anything is sent)
    forced_variant: str = ""  # the form's `variant`: ship this one everywhere (still checked on the canary)
    max_failed: int = 0  # later-wave devices that may fail or be offline without failing the rollout

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise RecordError(f"RolloutPlan.action={self.action!r}: expected one of {ACTIONS}")
        if self.action == FORWARD and self.verdict is None:
            raise RecordError("a forward RolloutPlan needs the run's gate verdict")


@dataclass(frozen=True)
class DeviceHealth(Record):
    """One canary measured against its group's budgets for one variant."""

    device: str
    variant: str
    healthy: bool
    reasons: tuple[str, ...]
    p95_ms: float | None = None
    peak_rss_mb: float | None = None
    accuracy: float | None = None
    host_accuracy: float | None = None


@dataclass(frozen=True)
class GroupChoice(Record):
    """The variant a device class runs, and why (measured on its canaries, or not measured at all)."""

    group: str
    variant: str | None  # None: no variant meets the group's budgets on its canaries
    reasons: tuple[str, ...]
    measured_on: tuple[str, ...] = ()  # the canaries whose benchmarks decided it
    health: tuple[DeviceHealth, ...] = ()  # every (canary, variant) checked


@dataclass(frozen=True)
class CanaryVerdict(Record):
    """The canary gate: continue to the later waves, or stop and roll the canaries back."""

    healthy: bool
    reasons: tuple[str, ...]
    choices: dict[str, GroupChoice]
    promote: tuple[DeviceTask, ...] = ()  # canaries re-deployed with their group's chosen variant
    later: tuple[DeviceTask, ...] = ()  # waves 1..n with their group's variant (empty when not healthy)
    rollback: tuple[DeviceTask, ...] = ()  # canaries switched back (when not healthy)
    traffic: tuple[TrafficVerdict, ...] = ()  # each canary of a group with a traffic canary, judged on its traffic

    def summary(self) -> str:
        picks = ", ".join(f"{g}={c.variant or 'none'}" for g, c in sorted(self.choices.items()))
        head = "canary healthy" if self.healthy else "CANARY FAILED: " + "; ".join(self.reasons)
        return f"{head} ({picks})"


@dataclass(frozen=True)
class SwitchResult(Record):
    """What a device operation did to ``current`` (deploy, promote, rollback)."""

    device: str
    release: str | None  # what current points at now
    previous: str | None
    variant: str | None
    arch: str = ""
    reused: bool = False
    runtime: dict[str, Any] = field(default_factory=dict)
    app_failure: str = ""  # "<step>: <why>": the target failed activate/health; ``release`` is where it went back

    def summary(self) -> str:
        now, was = self.release or "nothing", self.previous or "nothing"
        return f"{self.device}: current -> {now} [{self.variant}], was {was}"


@dataclass(frozen=True)
class DeviceOutcome(Record):
    device: str
    group: str
    wave: int
    status: Outcome
    release: str | None = None
    variant: str | None = None
    bench: dict[str, ModelBench] = field(default_factory=dict)
    bench_record: ArtifactRef | None = None
    label: str = ""  # native | emulated | host
    note: str = ""

    def __post_init__(self) -> None:
        _as_enum(self, "status", Outcome)


@dataclass(frozen=True)
class RolloutRecord(Record):
    """``rollouts/<id>/record.json``: what the rollout did, device by device, and why."""

    rollout_id: str
    action: str
    run_id: str
    status: RolloutStatus
    reasons: tuple[str, ...]
    devices: tuple[DeviceOutcome, ...]
    choices: dict[str, GroupChoice] = field(default_factory=dict)
    created_at: str = ""
    airflow_run_id: str = ""
    traffic: tuple[TrafficVerdict, ...] = ()  # the traffic canary's verdicts (groups that enable it)

    def __post_init__(self) -> None:
        _as_enum(self, "status", RolloutStatus)

    def summary(self) -> str:
        counts: dict[str, int] = {}
        for d in self.devices:
            counts[d.status] = counts.get(d.status, 0) + 1
        tally = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        return f"rollout {self.rollout_id} ({self.action} {self.run_id or 'previous'}): {self.status}; {tally}"


@dataclass(frozen=True)
class DeviceState(Record):
    """``devices/<name>/state.json``: the device's ``current`` after its last switch, written at the switch."""

    device: str
    release: str | None
    previous: str | None  # current just before this switch; a rollback without a run goes to history.previous_release
    run_id: str | None
    variant: str | None
    rollout_id: str
    action: str  # a SwitchAction value
    switched_at: str  # ISO 8601 UTC
    group: str = ""
    arch: str = ""


def split_release(release: str | None) -> tuple[str | None, str | None]:
    """(run id, variant) of a release id made by ``release_id``; (release, None) for older release ids."""
    from tasks.core.modes import QUANT_MODES

    if not release:
        return None, None
    run, _, variant = release.rpartition(".")
    return (run, variant) if run and variant in QUANT_MODES else (release, None)
