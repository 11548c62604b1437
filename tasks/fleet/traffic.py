"""The canary on real traffic (optional per group): judge a canary by what edgeops-serve measured on it.

A group of the fleet file may set ``traffic_canary`` (off by default), in the style of AWS IoT Greengrass's
abort criteria (``minNumberOfExecutedThings``, ``thresholdPercentage``)::

    "traffic_canary": {"min_requests": 200, "max_wait_s": 900, "max_error_rate": 0.01,
                       "max_p95_ms": 50, "max_confidence_drop": 0.05}

Before the canary gate promotes, the rollout waits (a reschedule-mode sensor, ``canary.traffic``) until every
canary of such a group has served ``min_requests`` requests of the NEW release, or ``max_wait_s`` passed since
its switch. Then, per canary:

* **error rate**: (server errors + bad requests) / requests <= ``max_error_rate``. Bad requests (4xx) count:
  the canary's applications send what they sent the previous release, so a release that turns their frames into
  400s (another input size) breaks them as surely as a 500;
* **p95 under load**: the served p95 (edgeops-serve's, the worst telemetry period) <= ``max_p95_ms``;
* **mean-confidence drop** vs the PREVIOUS release on the same device (its telemetry too) <= ``max_confidence_drop``.
  The mean comes from the ten-bin confidence histogram (bin midpoints, within 0.05).

Too little traffic is said explicitly (``no traffic: N of M requests, benchmark gate decides``) and does not fail:
the benchmark gate decides alone. This module is pure (figures in, verdict out; the sum is
``telemetry.summarize``); reading the telemetry is ``traffic_read.py``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from tasks.core.exceptions import ConfigError
from tasks.core.results import Record
from tasks.fleet.telemetry import CONFIDENCE_BINS, mean_confidence, summarize

POKE_S = 15.0  # the sensor's poke interval: edgeops-serve rewrites its open telemetry every 10 s
MAX_WAIT_S = 6 * 3600.0  # a longer wait belongs in a staged rollout, not in one DAG run
SENSOR_TIMEOUT_S = MAX_WAIT_S + 1800.0  # a safety net only: the sensor ends itself after max_wait_s

PASSED, FAILED, NO_TRAFFIC = "passed", "failed", "no_traffic"


@dataclass(frozen=True)
class TrafficCanary(Record):
    """A group's traffic-canary thresholds (``traffic_canary`` in the fleet file); every key is required."""

    min_requests: int  # requests of the new release on each canary before it is judged
    max_wait_s: float  # ... or this long after its switch; with fewer requests the benchmark gate decides
    max_error_rate: float  # (errors + bad requests) / requests, 0..1
    max_p95_ms: float  # served p95 latency under the canary's own load
    max_confidence_drop: float  # mean top probability: previous release minus new, 0..1

    def __post_init__(self) -> None:
        def need(ok: bool, what: str) -> None:
            if not ok:
                raise ConfigError(f"traffic_canary.{what}")

        need(isinstance(self.min_requests, int) and not isinstance(self.min_requests, bool)
             and self.min_requests >= 1, f"min_requests={self.min_requests!r}: an integer >= 1")
        need(0 < self.max_wait_s <= MAX_WAIT_S, f"max_wait_s={self.max_wait_s}: must be in (0, {MAX_WAIT_S:g}] s")
        need(0 <= self.max_error_rate <= 1, f"max_error_rate={self.max_error_rate}: a fraction in [0, 1]")
        need(self.max_p95_ms > 0, f"max_p95_ms={self.max_p95_ms}: must be > 0 (ms)")
        need(0 <= self.max_confidence_drop <= 1,
             f"max_confidence_drop={self.max_confidence_drop}: in [0, 1] (confidence is 0..1)")

    @classmethod
    def parse(cls, raw: Any) -> TrafficCanary:
        """The fleet file's object -> settings; unknown or missing keys and non-numbers are one ConfigError."""
        fields = ("min_requests", "max_wait_s", "max_error_rate", "max_p95_ms", "max_confidence_drop")
        if not isinstance(raw, Mapping):
            raise ConfigError(f"traffic_canary: expected an object with {list(fields)}")
        unknown, missing = sorted(set(raw) - set(fields)), [f for f in fields if f not in raw]
        if unknown or missing:
            raise ConfigError(f"traffic_canary: unknown key(s) {unknown}, missing key(s) {missing}; "
                              f"keys: {list(fields)}")
        if any(isinstance(raw[f], bool) or not isinstance(raw[f], int | float) for f in fields):
            raise ConfigError(f"traffic_canary: every value must be a number: {dict(raw)}")
        if raw["min_requests"] != int(raw["min_requests"]):
            raise ConfigError(f"traffic_canary.min_requests={raw['min_requests']!r}: an integer >= 1")
        return cls(int(raw["min_requests"]), *(float(raw[f]) for f in fields[1:]))


@dataclass(frozen=True)
class TrafficFigures(Record):
    """One release's served figures on one device, summed over telemetry files (field names as
    ``tasks.fleet.telemetry.TelemetrySummary``)."""

    requests: int = 0
    errors: int = 0  # 5xx
    bad_requests: int = 0  # 4xx
    latency_p95_ms: float | None = None  # the worst period's p95 (percentiles do not add up)
    confidence_bins: tuple[int, ...] = (0,) * CONFIDENCE_BINS
    files: int = 0

    @property
    def failure_rate(self) -> float:
        return (self.errors + self.bad_requests) / self.requests if self.requests else 0.0

    @property
    def mean_confidence(self) -> float | None:
        return mean_confidence(self.confidence_bins)


def figures(release: str, docs: Iterable[Mapping[str, Any]], written_since: str = "") -> TrafficFigures:
    """Sum edgeops-serve telemetry documents of ``release`` (open or final) written at or after ``written_since``
    (a UTC stamp ``YYYYmmddTHHMMSSZ``; "" = all), through ``telemetry.summarize``, the one sum of telemetry. A
    document that is not schema-1 telemetry of ``release`` is not counted.

    Only the release's latest activation counts (``activated``: edgeops-serve's swap to it). A release served
    earlier in the same period, e.g. rolled back and rolled out again within the hour, has an older window whose
    traffic is not this switch's; summed in, it would dilute what the canary must judge."""
    recent = [d for d in docs if isinstance(d, Mapping) and str(d.get("written_at", "")) >= written_since]
    latest = max((str(d.get("activated", "")) for d in recent), default="")
    kept = [(str(i), d) for i, d in enumerate(recent) if str(d.get("activated", "")) == latest]
    s = summarize("", release, kept)
    return TrafficFigures(requests=s.requests, errors=s.errors, bad_requests=s.bad_requests,
                          latency_p95_ms=s.latency_p95_ms, confidence_bins=s.confidence_bins, files=s.files)


@dataclass(frozen=True)
class TrafficVerdict(Record):
    """One canary judged on its real traffic: ``passed``, ``failed`` or ``no_traffic`` (the benchmark gate
    decides alone). Shown in the rollout record and report."""

    device: str
    group: str
    release: str
    previous: str | None
    status: str  # PASSED | FAILED | NO_TRAFFIC
    reasons: tuple[str, ...]
    settings: TrafficCanary
    new: TrafficFigures
    old: TrafficFigures | None = None  # the previous release's figures on the device (None: not compared)
    waited_s: float = 0.0

    @property
    def healthy(self) -> bool:
        return self.status != FAILED


def ready(settings: TrafficCanary, new: TrafficFigures, waited_s: float) -> bool:
    """Enough requests of the new release, or waited long enough: the canary can be judged."""
    return new.requests >= settings.min_requests or waited_s >= settings.max_wait_s


def judge(settings: TrafficCanary, device: str, group: str, release: str, previous: str | None,
          new: TrafficFigures, old: TrafficFigures | None, waited_s: float) -> TrafficVerdict:
    """The traffic verdict of one canary (see the module doc); every threshold missed is a reason."""
    def verdict(status: str, reasons: list[str]) -> TrafficVerdict:
        return TrafficVerdict(device, group, release, previous, status, tuple(reasons), settings, new, old,
                              round(waited_s, 1))

    if new.requests < settings.min_requests:
        return verdict(NO_TRAFFIC, [f"no traffic: {new.requests} of {settings.min_requests} requests of {release} "
                                    f"on {device} after {waited_s:.0f} s, benchmark gate decides"])
    failures, notes = [], [f"{new.requests} requests of {release} on {device}"]
    rate = new.failure_rate
    line = (f"error rate {rate:.2%} ({new.errors} errors + {new.bad_requests} bad requests of {new.requests}) "
            f"{'>' if rate > settings.max_error_rate else '<='} {settings.max_error_rate:.2%}")
    (failures if rate > settings.max_error_rate else notes).append(f"{device}: {line}")
    if new.latency_p95_ms is not None:
        over = new.latency_p95_ms > settings.max_p95_ms
        (failures if over else notes).append(f"{device}: served p95 {new.latency_p95_ms:.3f} ms "
                                             f"{'>' if over else '<='} {settings.max_p95_ms:g} ms")
    notes_or_fail = _confidence(settings, device, release, previous, new, old)
    (failures if notes_or_fail[0] else notes).append(notes_or_fail[1])
    return verdict(FAILED, failures) if failures else verdict(PASSED, notes)


def _confidence(settings: TrafficCanary, device: str, release: str, previous: str | None, new: TrafficFigures,
                old: TrafficFigures | None) -> tuple[bool, str]:
    """(failed?, the sentence) for the mean-confidence drop vs the previous release."""
    now, before = new.mean_confidence, old.mean_confidence if old else None
    if not previous or previous == release:
        return False, f"{device}: confidence not compared: no previous release"
    if now is None or before is None:
        missing = previous if now is not None else release
        return False, f"{device}: confidence not compared: no classified request of {missing}"
    drop = before - now
    over = drop > settings.max_confidence_drop
    return over, (f"{device}: mean confidence {now:.3f} vs {before:.3f} on {previous}: drop {drop:+.3f} "
                  f"{'>' if over else '<='} {settings.max_confidence_drop:g}")


def gate_reasons(enabled: Iterable[str], expected: Iterable[tuple[str, str]],
                 verdicts: Iterable[TrafficVerdict]) -> list[str]:
    """What stops the rollout: each failed traffic verdict, and each canary of an enabled group (``expected``:
    (device, group) pairs that deployed) the traffic canary did not judge (its sensor failed or timed out)."""
    judged = {v.device: v for v in verdicts}
    out = []
    for device, group in expected:
        if group not in set(enabled):
            continue
        v = judged.get(device)
        if v is None:
            out.append(f"group {group}: the traffic canary did not judge {device} (see canary.traffic's log)")
        elif not v.healthy:
            out.append(f"group {group}: traffic canary failed on {device}: {'; '.join(v.reasons)}")
    return out
