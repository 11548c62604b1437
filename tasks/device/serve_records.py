"""edgeops-serve's records on the device: rolling telemetry per release, and sampled inputs.

STANDALONE like bench.py (standard library + numpy); shipped beside serve.py. Never import the project here.
numpy is imported inside the functions that use it: the platform reads ``CONFIDENCE_BINS`` from here while Airflow
parses the DAGs, and the Airflow image has no numpy (tests/dags/test_dagbag.py blocks it).
Every file is written the same way (``write_atomic``): a dot-named tmp file, fsync, rename, fsync of the
directory; so a power cut leaves either the old file or the new one, and readers skip dot files.

Telemetry, ``<state>/telemetry/<release>/<period>-<instance>.json``: one file per period (an hour by default;
``period`` is its UTC start, ``instance`` a random id of the window, so neither a restart nor a re-activation
within the hour overwrites the figures before it). Each swap to a release is an activation: the release's open
window ends (final) and a new one starts, and every window says which activation it counts (``activated``), so
a canary judges only the traffic since its switch, not an earlier activation's within the same hour.
While the period is open the file is rewritten every flush
(``"final": false``); when it ends it is written once more with ``"final": true``: a collector takes final files
only and deletes them once uploaded. Over the byte budget, the oldest files are deleted first.

Samples, ``<state>/samples/<release>/<stamp>-<seq>-<kind>-<sha256>.npz`` (arrays ``x`` as received,
``probabilities``, ``index``, ``release``, ``kind``): ``kind`` is ``low`` (confidence under the threshold) or
``reservoir`` (a uniform sample of each period's requests, Algorithm R, ``k`` slots; a slot's earlier file is
replaced). The sha256 of the file's bytes is in its name: a collector checks it, uploads, and deletes. Over the
byte budget, the oldest samples go first (any release); a sample larger than the whole budget is not kept.
Files are written by one background thread; when its queue is full the sample is dropped and counted.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import queue
import random
import sys
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

CONFIDENCE_BINS = 10  # [0, .1), [.1, .2) ... [.9, 1]


def confidence_bin(confidence: float) -> int:
    """The confidence histogram's bin of a top probability (the evaluate step's baseline uses the same rule)."""
    return min(max(int(confidence * CONFIDENCE_BINS), 0), CONFIDENCE_BINS - 1)


LATENCIES_KEPT = 8192  # per release and period: p50/p95/p99 are over the last this many requests
QUEUE = 256


def write_atomic(path: Path, data: bytes) -> None:
    """tmp file, fsync, rename over ``path``, fsync the directory (and its parent when it was just made)."""
    if not path.parent.is_dir():
        path.parent.mkdir(parents=True, exist_ok=True)
        _fsync_dir(path.parent.parent)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _files(root: Path, pattern: str) -> list[tuple[str, Path, int]]:
    """(sort key, path, size) of the visible files under ``root/<release>/``, oldest first by name."""
    found = []
    for path in root.glob(f"*/{pattern}"):
        try:
            found.append((path.name, path, path.stat().st_size))
        except FileNotFoundError:  # a collector deleted it meanwhile
            continue
    return sorted(found)


def _evict(root: Path, pattern: str, budget: int, incoming: int, keep: set[Path]) -> None:
    """Delete the oldest files until the rest plus ``incoming`` bytes fit the budget; never one in ``keep``."""
    files = [f for f in _files(root, pattern) if f[1] not in keep]
    total = sum(size for _, _, size in _files(root, pattern)) + incoming
    for _, path, size in files:
        if total <= budget:
            break
        path.unlink(missing_ok=True)
        total -= size


def period_start(now: float, period_s: float) -> float:
    return now - now % period_s


def stamp(t: float) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(t))


@dataclass
class Window:
    """One release's figures over one period (mutable; only under Telemetry's lock)."""

    release: str
    start: float
    activated: float | None = None  # when the release was swapped in: the activation this counts (None: start)
    instance: str = field(default_factory=lambda: os.urandom(3).hex())
    requests: int = 0
    errors: int = 0
    bad_requests: int = 0
    samples_dropped: int = 0
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCIES_KEPT))
    classes: Counter[int] = field(default_factory=Counter)
    confidence: list[int] = field(default_factory=lambda: [0] * CONFIDENCE_BINS)

    def __post_init__(self) -> None:
        self.activated = self.start if self.activated is None else self.activated

    def doc(self, period_s: float, final: bool) -> dict[str, Any]:
        import numpy as np

        lat = np.percentile(np.array(self.latencies), [50, 95, 99]) if self.latencies else [None] * 3
        return {"schema": 1, "release": self.release, "period_start": stamp(self.start), "period_s": period_s,
                "activated": stamp(self.activated or self.start),
                "final": final, "written_at": stamp(time.time()), "requests": self.requests, "errors": self.errors,
                "bad_requests": self.bad_requests, "samples_dropped": self.samples_dropped,
                "latency_ms": dict(zip(("p50", "p95", "p99"),
                                       (None if v is None else round(float(v), 4) for v in lat), strict=True)),
                "classes": {str(k): v for k, v in sorted(self.classes.items())}, "confidence_bins": self.confidence}


class Telemetry:
    """Per-release rolling figures; ``flush`` (the service's flusher thread) writes them and rotates periods."""

    def __init__(self, root: Path, period_s: float, budget_bytes: int) -> None:
        self.root, self.period_s, self.budget = root, period_s, budget_bytes
        self._born = time.time()
        self._lock = threading.Lock()
        self._open: dict[str, Window] = {}
        self._done: list[Window] = []
        self._activated: dict[str, float] = {}

    def activated(self, release: str) -> None:
        """``release`` is swapped in now: its open window (an earlier activation's traffic) ends."""
        with self._lock:
            self._activated[release] = time.time()
            w = self._open.pop(release, None)
            if w is not None:
                self._done.append(w)

    def _window(self, release: str) -> Window:
        start = period_start(time.time(), self.period_s)
        w = self._open.get(release)
        if w is None or w.start != start:
            if w is not None:
                self._done.append(w)
            w = self._open[release] = Window(release, start, self._activated.get(release, self._born))
        return w

    def record(self, release: str, latency_ms: float, index: int | None, confidence: float | None,
               status: int = 200) -> None:
        with self._lock:
            w = self._window(release)
            w.requests += 1
            w.errors += status >= 500
            w.bad_requests += 400 <= status < 500
            if index is not None and confidence is not None:
                w.latencies.append(latency_ms)
                w.classes[index] += 1
                w.confidence[confidence_bin(confidence)] += 1

    def dropped(self, release: str) -> None:
        with self._lock:
            self._window(release).samples_dropped += 1

    def path(self, w: Window) -> Path:
        return self.root / w.release / f"{stamp(w.start)}-{w.instance}.json"

    def flush(self, closing: bool = False) -> None:
        """Write ended periods as final, then the open ones (final too when ``closing``); keep to the budget."""
        with self._lock:
            now = period_start(time.time(), self.period_s)
            for release, w in list(self._open.items()):
                if w.start != now or closing:
                    self._done.append(self._open.pop(release))
            done, self._done = self._done, []
            docs = [(self.path(w), w.doc(self.period_s, True)) for w in done]
            docs += [(self.path(w), w.doc(self.period_s, False)) for w in self._open.values()]
        for path, doc in docs:
            write_atomic(path, json.dumps(doc, sort_keys=True).encode())
        _evict(self.root, "*.json", self.budget, 0, {self.path(w) for w in self._open.values()})


@dataclass(frozen=True)
class Offer:
    """A sample chosen in a request thread, written by the writer thread."""

    release: str
    kind: str
    slot: tuple[float, int] | None  # (reservoir period, slot index)
    x: np.ndarray
    probabilities: tuple[float, ...]
    index: int


class Sampler:
    """Chooses samples (low confidence, plus a per-period uniform reservoir) and writes them within a budget."""

    def __init__(self, root: Path, threshold: float, reservoir: int, budget_bytes: int, period_s: float,
                 telemetry: Telemetry) -> None:
        self.root, self.threshold, self.k, self.budget = root, threshold, reservoir, budget_bytes
        self.period_s, self.telemetry = period_s, telemetry
        self._lock = threading.Lock()
        self._seen, self._period = 0, 0.0  # the reservoir of the current period
        self._slots: dict[tuple[float, int], Path] = {}
        self._seq = 0
        self._queue: queue.Queue[Offer | None] = queue.Queue(QUEUE)
        self._rng = random.Random()
        self._thread = threading.Thread(target=self._write_loop, name="sampler", daemon=True)
        self._thread.start()

    def offer(self, release: str, x: np.ndarray, probabilities: tuple[float, ...], index: int) -> None:
        import numpy as np

        kind, slot = self._choose(probabilities[index])
        if kind is None:
            return
        try:
            self._queue.put_nowait(Offer(release, kind, slot, np.array(x, copy=True), probabilities, index))
        except queue.Full:
            self.telemetry.dropped(release)

    def _choose(self, confidence: float) -> tuple[str | None, tuple[float, int] | None]:
        if confidence < self.threshold:
            return "low", None
        with self._lock:
            start = period_start(time.time(), self.period_s)
            if start != self._period:  # a new reservoir; the last period's files stay for the collector
                self._seen, self._period = 0, start
                self._slots = {key: path for key, path in self._slots.items() if key[0] == start}
            self._seen += 1
            slot = self._seen - 1 if self._seen <= self.k else self._rng.randrange(self._seen)
        return ("reservoir", (start, slot)) if slot < self.k else (None, None)

    def _write_loop(self) -> None:
        while (offer := self._queue.get()) is not None:
            try:
                self._write(offer)
            except OSError as exc:  # a full or read-only disk must not stop the service
                print(f"[serve] sample not written: {exc}", file=sys.stderr, flush=True)
                self.telemetry.dropped(offer.release)

    def _write(self, o: Offer) -> None:
        import numpy as np

        buf = io.BytesIO()
        np.savez(buf, x=o.x, probabilities=np.array(o.probabilities), index=np.int64(o.index),
                 release=np.str_(o.release), kind=np.str_(o.kind))
        data = buf.getvalue()
        if len(data) > self.budget:
            self.telemetry.dropped(o.release)
            return
        self._seq += 1
        name = f"{stamp(time.time())}-{self._seq:08d}-{o.kind}-{hashlib.sha256(data).hexdigest()}.npz"
        path = self.root / o.release / name
        _evict(self.root, "*.npz", self.budget, len(data), set())
        write_atomic(path, data)
        if o.slot is not None:
            with self._lock:
                old, self._slots[o.slot] = self._slots.get(o.slot), path
            if old is not None:
                old.unlink(missing_ok=True)  # replaced in the reservoir (or already collected)

    def close(self, timeout: float = 5.0) -> None:
        self._queue.put(None)
        self._thread.join(timeout)
