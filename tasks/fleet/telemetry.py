"""Collected production telemetry of one (device, release), summed over a window: the one reader of
``s3://artifacts/telemetry/<device>/<release>/<period>-<instance>.json`` (written by edgeops-serve,
``tasks/device/serve_records.py``, brought back by ``tasks/fleet/collect.py``).

``aggregate(store, device, release, since)`` is what drift (``tasks/fleet/drift.py``) and a traffic-based canary
gate read. Counts add up exactly across files (requests, errors, the class and confidence histograms). Latency
percentiles cannot be added: the summary keeps the worst period's p95 and p99 (a conservative figure), and the
request-weighted mean of the periods' p50.

The window is by period start: a file counts when its period started at or after ``since`` (None: every file).
File names start with the period's UTC stamp, so files before the window are skipped without being read. A file
that is not edgeops-serve telemetry is not counted and is named in ``unreadable`` (one bad file does not hide a
device's figures).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tasks.core import keys
from tasks.core.exceptions import EdgeOpsError
from tasks.core.storage import ArtifactStore
from tasks.device.serve_records import CONFIDENCE_BINS

STAMP_FORMAT = "%Y%m%dT%H%M%SZ"  # serve_records.stamp
FILE_NAME = re.compile(r"^(\d{8}T\d{6}Z)-[A-Za-z0-9]+\.json$")  # <period start>-<instance>.json


@dataclass(frozen=True)
class TelemetrySummary:
    """Production figures of one release on one device over a window (see the module doc)."""

    device: str
    release: str
    since: str | None  # UTC stamp of the window's start (None: all collected telemetry)
    files: int  # telemetry files counted
    first_period: str | None  # UTC stamp of the earliest period counted (None: no file)
    last_period: str | None
    requests: int  # every request, answered or not
    errors: int  # server errors (5xx)
    bad_requests: int  # 4xx: bodies that could not be the model's input
    samples_dropped: int
    classes: tuple[int, ...]  # predictions per class index (dense, as long as the highest index seen + 1)
    confidence_bins: tuple[int, ...]  # CONFIDENCE_BINS bins of the top probability: [0, .1) ... [.9, 1]
    latency_p50_ms: float | None  # request-weighted mean of the periods' p50
    latency_p95_ms: float | None  # worst period
    latency_p99_ms: float | None  # worst period
    unreadable: tuple[str, ...] = ()  # keys not counted, each with why

    @property
    def predictions(self) -> int:
        """Requests that were classified (the histograms' total)."""
        return sum(self.confidence_bins)

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None

    @property
    def mean_confidence(self) -> float | None:
        return mean_confidence(self.confidence_bins)


def mean_confidence(bins: tuple[int, ...] | list[int]) -> float | None:
    """Mean top probability of a confidence histogram, from the bins' midpoints (within half a bin, 0.05)."""
    n = sum(bins)
    return sum((i + 0.5) / CONFIDENCE_BINS * c for i, c in enumerate(bins)) / n if n else None


def stamp(when: datetime) -> str:
    return when.astimezone(UTC).strftime(STAMP_FORMAT)


def aggregate(store: ArtifactStore, device: str, release: str, since: datetime | None = None) -> TelemetrySummary:
    """Sum the collected telemetry of ``release`` on ``device`` whose period started at or after ``since``."""
    floor = None if since is None else stamp(since)
    prefix = keys.telemetry(device, release, "")

    def docs() -> Iterator[tuple[str, Any]]:
        for obj in store.list(prefix):
            key = obj["Key"]
            m = FILE_NAME.match(key[len(prefix):])
            if m and floor is not None and m.group(1) < floor:
                continue
            try:
                yield key, json.loads(store.get_bytes(key))
            except (EdgeOpsError, ValueError) as exc:
                yield key, exc

    return summarize(device, release, docs(), floor)


def summarize(device: str, release: str, docs: Iterable[tuple[str, Any]], floor: str | None = None) -> TelemetrySummary:
    """Sum telemetry documents of ``release`` given as (name, parsed JSON or the exception that stopped reading it)
    whose period started at or after ``floor`` (a UTC stamp; None: all). What ``aggregate`` does for collected
    files, and the traffic canary for the files it reads on the device and in the store."""
    acc = _Acc()
    for name, doc in docs:
        try:
            if isinstance(doc, Exception):
                raise doc
            acc.add(_checked(doc, release, floor))
        except _Outside:
            continue
        except (EdgeOpsError, ValueError, TypeError, KeyError) as exc:
            acc.unreadable.append(f"{name}: {exc}")
    return acc.summary(device, release, floor)


class _Outside(Exception):
    """The file's period starts before the window."""


def _checked(doc: Any, release: str, floor: str | None) -> dict[str, Any]:
    """The telemetry document, or ValueError saying why it is not edgeops-serve's telemetry of ``release``."""
    if not isinstance(doc, dict) or doc.get("schema") != 1:
        raise ValueError("not edgeops-serve telemetry (schema 1)")
    if doc["release"] != release:
        raise ValueError(f"holds release {doc['release']!r}, not {release!r}")
    bins = doc["confidence_bins"]
    if not isinstance(bins, list) or len(bins) != CONFIDENCE_BINS:
        raise ValueError(f"confidence_bins must be a list of {CONFIDENCE_BINS} counts")
    if not isinstance(doc["classes"], dict) or not isinstance(doc["latency_ms"], dict):
        raise ValueError("classes and latency_ms must be objects")
    if floor is not None and str(doc["period_start"]) < floor:
        raise _Outside()
    return doc


class _Acc:
    """Running sums of telemetry documents (only inside ``aggregate``)."""

    def __init__(self) -> None:
        self.files = self.requests = self.errors = self.bad = self.dropped = 0
        self.classes: dict[int, int] = {}
        self.bins = [0] * CONFIDENCE_BINS
        self.periods: list[str] = []
        self.p50_weighted = 0.0
        self.p50_weight = 0
        self.p95: float | None = None
        self.p99: float | None = None
        self.unreadable: list[str] = []

    def add(self, doc: dict[str, Any]) -> None:
        classes = {int(k): int(v) for k, v in doc["classes"].items()}
        if any(k < 0 or v < 0 for k, v in classes.items()):
            raise ValueError("negative class index or count")
        bins = [int(v) for v in doc["confidence_bins"]]
        lat = doc["latency_ms"]
        requests = int(doc["requests"])
        self.files += 1
        self.requests += requests
        self.errors += int(doc["errors"])
        self.bad += int(doc.get("bad_requests", 0))
        self.dropped += int(doc.get("samples_dropped", 0))
        for k, v in classes.items():
            self.classes[k] = self.classes.get(k, 0) + v
        self.bins = [a + b for a, b in zip(self.bins, bins, strict=True)]
        self.periods.append(str(doc["period_start"]))
        if lat.get("p50") is not None:
            self.p50_weighted += float(lat["p50"]) * max(sum(bins), 1)
            self.p50_weight += max(sum(bins), 1)
        self.p95 = _worst(self.p95, lat.get("p95"))
        self.p99 = _worst(self.p99, lat.get("p99"))

    def summary(self, device: str, release: str, floor: str | None) -> TelemetrySummary:
        dense = tuple(self.classes.get(i, 0) for i in range(max(self.classes, default=-1) + 1))
        return TelemetrySummary(
            device=device, release=release, since=floor, files=self.files,
            first_period=min(self.periods, default=None), last_period=max(self.periods, default=None),
            requests=self.requests, errors=self.errors, bad_requests=self.bad, samples_dropped=self.dropped,
            classes=dense, confidence_bins=tuple(self.bins),
            latency_p50_ms=round(self.p50_weighted / self.p50_weight, 4) if self.p50_weight else None,
            latency_p95_ms=self.p95, latency_p99_ms=self.p99, unreadable=tuple(self.unreadable))


def _worst(a: float | None, b: Any) -> float | None:
    if b is None:
        return a
    return float(b) if a is None else max(a, float(b))
