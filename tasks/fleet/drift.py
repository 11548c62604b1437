"""Drift: does a release see, on a device's real traffic, what it saw on its test split?

For one (device, release) it compares two distributions of the collected production telemetry over a window
(``tasks.fleet.telemetry.aggregate``) with the release's **baseline**, the evaluate step's figures for that
variant on the test split (``runs/<run_id>/eval/metrics.json``, found through the run's manifest):

* the predicted-class histogram (baseline: the variant's test predictions, counted per class);
* the confidence histogram, ten bins of the top probability (baseline: ``EvalVariant.confidence_bins``, binned
  like edgeops-serve bins traffic; None for an evaluation from before it was recorded: then only classes count).

Statistics, per distribution:

* **PSI** (population stability index) = sum over bins of (p - q) * ln(p / q), p the production share, q the
  baseline share. An empty bin's share is replaced by ``EPSILON`` (1e-4) on both sides, so PSI stays finite.
  Rule of thumb: < 0.1 stable, 0.1-0.25 moderate, > 0.25 a major shift.
* **chi-square goodness of fit** of the production counts against the baseline shares (scipy), its p-value.
  With thousands of requests even a harmless difference is significant, so p-values only decide when the
  group's ``alpha`` is above 0 (default 0: reported, not used).

Verdict (``DriftVerdict.status``): ``insufficient`` below ``min_requests`` classified requests in the window (never
"ok" on too little data) or without a baseline; ``drift`` when a PSI exceeds ``psi`` (or a p-value is below
``alpha``); ``ok`` otherwise. Thresholds are the fleet file group's ``drift`` object (``DriftSettings``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from tasks.core.exceptions import ConfigError, EdgeOpsError
from tasks.core.metrics import EvalMetrics
from tasks.core.results import Record
from tasks.core.storage import ArtifactStore
from tasks.fleet.telemetry import TelemetrySummary, aggregate

if TYPE_CHECKING:
    from tasks.fleet.inventory import Inventory

EPSILON = 1e-4  # share given to an empty bin before PSI / chi-square (either side)
OK, DRIFT, INSUFFICIENT = "ok", "drift", "insufficient"
NO_BASELINE = "no baseline"


@dataclass(frozen=True)
class DriftSettings(Record):
    """A fleet group's ``drift`` object: the thresholds of its devices' verdicts."""

    psi: float = 0.25  # a PSI above this is drift (0.25: the conventional "major shift")
    alpha: float = 0.0  # a chi-square p-value below this is drift too; 0: p-values are reported only
    min_requests: int = 200  # fewer classified requests in the window: insufficient data
    window_h: float = 24.0  # hours of telemetry (by period start) compared with the baseline

    def __post_init__(self) -> None:
        if isinstance(self.min_requests, bool) or not isinstance(self.min_requests, int) or self.min_requests < 1:
            raise ConfigError(f"drift.min_requests={self.min_requests!r}: must be an integer >= 1")
        for name, value, ok in (("psi", self.psi, self.psi > 0), ("alpha", self.alpha, 0 <= self.alpha < 1),
                                ("window_h", self.window_h, self.window_h > 0)):
            if isinstance(value, bool) or not ok:
                raise ConfigError(f"drift.{name}={value!r}: psi and window_h must be > 0, alpha in [0, 1)")

    @classmethod
    def from_dict(cls, raw: Any) -> DriftSettings:
        """From a fleet file's group ``drift`` object; unknown keys and non-numbers are one ConfigError."""
        known = {"psi", "alpha", "min_requests", "window_h"}
        if not isinstance(raw, dict) or set(raw) - known:
            raise ConfigError(f"drift: expected an object with keys from {sorted(known)}, got {raw!r}")
        if any(isinstance(v, bool) or not isinstance(v, int | float) for v in raw.values()):
            raise ConfigError(f"drift: values must be numbers, got {raw!r}")
        return cls(**raw)


@dataclass(frozen=True)
class Baseline:
    """The release's test-split distributions (one variant of one run)."""

    classes: tuple[int, ...]  # test predictions per class index
    confidence_bins: tuple[int, ...] | None  # None: an evaluation from before confidence bins were recorded


@dataclass(frozen=True)
class DriftVerdict(Record):
    """One (device, release) compared with its baseline. The edgeops_drift asset event's extra is ``to_xcom()``."""

    device: str
    release: str
    status: str  # ok | drift | insufficient
    n: int  # classified production requests in the window
    psi_class: float | None = None
    psi_confidence: float | None = None
    p_class: float | None = None  # chi-square p-value of the class histogram
    p_confidence: float | None = None
    since: str | None = None  # window start (UTC stamp)
    reason: str = ""

    def cell(self) -> str:
        """The DRIFT column: ``ok 0.03``, ``drift 0.41``, ``insufficient 12/200``."""
        if self.status == INSUFFICIENT:
            return "no baseline" if self.reason.startswith(NO_BASELINE) else f"insufficient ({self.n} req)"
        psi = max((v for v in (self.psi_class, self.psi_confidence) if v is not None), default=0.0)
        return f"{self.status} {psi:.2f}"


def psi(production: list[int] | tuple[int, ...], baseline: list[int] | tuple[int, ...]) -> float:
    """PSI of two histograms over the same bins (counts), empty bins at ``EPSILON``."""
    p, q = _shares(production), _shares(baseline)
    return float(sum((a - b) * math.log(a / b) for a, b in zip(p, q, strict=True)))


def chi_square_p(production: list[int] | tuple[int, ...], baseline: list[int] | tuple[int, ...]) -> float:
    """p-value of a chi-square goodness-of-fit test of the production counts against the baseline's shares."""
    from scipy.stats import chisquare

    n = sum(production)
    expected = [s * n for s in _shares(baseline)]
    return float(chisquare(list(production), expected).pvalue)


def _shares(counts: list[int] | tuple[int, ...]) -> list[float]:
    total = sum(counts)
    if total <= 0:
        raise ValueError("a histogram with no counts has no shares")
    raw = [max(c / total, EPSILON) for c in counts]
    return [s / sum(raw) for s in raw]


def _aligned(production: tuple[int, ...], baseline: tuple[int, ...]) -> tuple[list[int], list[int]]:
    """Both class histograms over the same bins (a class index the baseline never saw gets a bin of its own)."""
    width = max(len(production), len(baseline))
    return ([*production, *[0] * (width - len(production))], [*baseline, *[0] * (width - len(baseline))])


def baseline(store: ArtifactStore, release: str) -> Baseline:
    """The release's test-split distributions; EdgeOpsError saying why when its run or metrics cannot be read."""
    from tasks.fleet.records import split_release
    from tasks.registry.runs import resolve

    run_id, variant = split_release(release)
    if not run_id or not variant:
        raise ConfigError(f"release {release!r} is not <run_id>.<variant>: no baseline")
    ref = resolve(store, run_id).evaluation.metrics
    if ref is None:
        raise ConfigError(f"run {run_id}'s manifest (schema 1) names no eval metrics: no baseline")
    metrics = EvalMetrics.from_dict(json.loads(store.get_ref(ref)), ref.uri)
    if variant not in metrics.variants or variant not in metrics.predictions:
        raise ConfigError(f"{ref.uri} has no variant {variant!r}: no baseline")
    counts = [0] * len(metrics.classes)
    for index in metrics.predictions[variant]:
        counts[index] += 1
    bins = metrics.variants[variant].confidence_bins
    return Baseline(tuple(counts), None if bins is None else tuple(bins))


def judge(summary: TelemetrySummary, base: Baseline, settings: DriftSettings) -> DriftVerdict:
    """The verdict of one window of telemetry against a baseline."""
    n = summary.predictions
    common = {"device": summary.device, "release": summary.release, "n": n, "since": summary.since}
    if n < settings.min_requests:
        return DriftVerdict(status=INSUFFICIENT, **common, reason=(
            f"only {n} classified request(s) since {summary.since or 'ever'}; at least {settings.min_requests} "
            "are needed (drift.min_requests)"))
    prod, ref = _aligned(summary.classes, base.classes)
    psi_c, p_c = psi(prod, ref), chi_square_p(prod, ref)
    psi_k = p_k = None
    if base.confidence_bins is not None:
        psi_k, p_k = psi(summary.confidence_bins, base.confidence_bins), \
            chi_square_p(summary.confidence_bins, base.confidence_bins)
    reasons = [f"{what} PSI {v:.3f} > {settings.psi}" for what, v in (("class", psi_c), ("confidence", psi_k))
               if v is not None and v > settings.psi]
    reasons += [f"{what} chi-square p {v:.2g} < {settings.alpha}" for what, v in (("class", p_c), ("confidence", p_k))
                if v is not None and v < settings.alpha]
    status = DRIFT if reasons else OK
    if base.confidence_bins is None:
        reasons.append("the baseline has no confidence histogram (evaluated before it was recorded): classes only")
    return DriftVerdict(status=status, **common,
                        psi_class=round(psi_c, 4), psi_confidence=None if psi_k is None else round(psi_k, 4),
                        p_class=p_c, p_confidence=p_k, reason="; ".join(reasons))


def check(store: ArtifactStore, device: str, release: str, settings: DriftSettings,
          now: datetime | None = None) -> DriftVerdict:
    """Drift of ``release`` on ``device`` over the last ``settings.window_h`` hours of collected telemetry."""
    since = (now or datetime.now(UTC)) - timedelta(hours=settings.window_h)
    try:
        summary = aggregate(store, device, release, since)
    except EdgeOpsError as exc:  # the listing failed: say so, never "ok"
        return DriftVerdict(device=device, release=release, status=INSUFFICIENT, n=0, reason=(
            f"telemetry unreadable: {exc}"))
    try:
        base = baseline(store, release)
    except EdgeOpsError as exc:
        return DriftVerdict(device=device, release=release, status=INSUFFICIENT, n=summary.predictions,
                            since=summary.since, reason=f"{NO_BASELINE}: {exc}")
    return judge(summary, base, settings)


def check_fleet(store: ArtifactStore, inventory: Inventory, now: datetime | None = None) -> list[DriftVerdict]:
    """A verdict for every inventory device's current release (its state record), with its group's thresholds;
    devices that no rollout ever switched have none."""
    from tasks.fleet.history import read_state

    out = []
    for device in inventory.devices:
        state = read_state(store, device.name)
        if state is not None and state.release:
            out.append(check(store, device.name, state.release, inventory.group(device.group).drift, now))
    return out


def record(store: ArtifactStore, verdicts: list[DriftVerdict]) -> list[DriftVerdict]:
    """Write each verdict to ``devices/<name>/drift.json``; return the ones that newly drift (the previous
    verdict was for another release, or not ``drift``): what a person is told about, once."""
    from tasks.core import keys

    news = []
    for v in verdicts:
        key = keys.device_drift(v.device)
        try:
            before = DriftVerdict.from_xcom(store.get_json(key)) if store.exists(key) else None
        except (EdgeOpsError, ValueError):
            before = None
        if v.status == DRIFT and (before is None or before.status != DRIFT or before.release != v.release):
            news.append(v)
        store.put_json(key, v.to_xcom())
    return news
