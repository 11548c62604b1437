"""edgeops-serve (tasks/device/serve.py) run as a device runs it: a subprocess of this venv's python over a real
deploy-root layout (releases/<id>/, a `current` symlink switched by rename), real TFLite models, real HTTP over
TCP and the Unix socket. Unit-level: no stack needed."""

from __future__ import annotations

import ast
import hashlib
import json
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tasks.device.serve_records import Sampler, Telemetry
from tests.faults.payloads import garbage_tflite, nan_tflite
from tests.helpers import tiny_tflite_release
from tests.serve_helpers import SERVE, Serve, make_release, switch

LABELS = ["cat", "dog", "owl"]


@pytest.fixture(scope="module")
def payload(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny 8x8x3 three-class model as fp32 and int8, its labelled sample, and two broken models."""
    work = tmp_path_factory.mktemp("serve-payload")
    files = tiny_tflite_release(work, samples=16)
    return {**files, "nan.tflite": nan_tflite(work / "nan.tflite"), "garbage.tflite": garbage_tflite(work / "g.tflite")}


@pytest.fixture
def root(tmp_path: Path, payload: dict[str, Path]) -> Path:
    """A deploy root with releases r1 (fp32, labels), r2 (int8), nan (NaN output) and garbage (no flatbuffer)."""
    sample = {"sample.npz": payload["sample.npz"]}
    make_release(tmp_path, "r1", {"fp32.tflite": payload["fp32.tflite"], **sample}, "fp32", LABELS)
    make_release(tmp_path, "r2", {"int8.tflite": payload["int8.tflite"], **sample}, "int8")
    make_release(tmp_path, "nan", {"fp32.tflite": payload["nan.tflite"], **sample}, "fp32")
    make_release(tmp_path, "garbage", {"fp32.tflite": payload["garbage.tflite"], **sample}, "fp32")
    switch(tmp_path, "r1")
    return tmp_path


def test_the_serve_modules_are_standalone() -> None:
    """Shipped to devices without the project: the standard library, numpy, LiteRT and each other only."""
    allowed = {"numpy", "ai_edge_litert", "tflite_runtime", "serve_model", "serve_records", "__future__"}
    for path in sorted(SERVE.parent.glob("serve*.py")):
        tree = ast.parse(path.read_text())
        names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        foreign = sorted(n for n in names - allowed if n not in sys.stdlib_module_names)
        assert not foreign, f"{path.name} imports {foreign}"


def _sample(payload: dict[str, Path]) -> tuple[np.ndarray, np.ndarray]:
    with np.load(payload["sample.npz"]) as data:
        return data["x"], data["y"]


def test_classify_over_http_and_the_unix_socket(root: Path, payload: dict[str, Path]) -> None:
    x, y = _sample(payload)
    serve = Serve(root)
    try:
        for unix in (False, True):
            client = serve.client(unix=unix)
            status, doc = client.classify_npy(x[0])
            assert status == 200, doc
            assert doc["release"] == "r1" and doc["variant"] == "fp32"
            assert doc["index"] == int(y[0]) and doc["label"] == LABELS[doc["index"]]
            assert len(doc["probabilities"]) == 3 and abs(sum(doc["probabilities"]) - 1) < 1e-3
            assert doc["confidence"] == max(doc["probabilities"])
            pixels = x[1].astype(np.uint8)
            raw = client.request("POST", "/v1/classify", pixels.tobytes(), {"X-Shape": "8,8,3", "X-Dtype": "uint8"})
            ppm = client.request("POST", "/v1/classify", b"P6\n# cam\n8 8\n255\n" + pixels.tobytes(),
                                 {"Content-Type": "image/x-portable-pixmap"})
            assert raw[0] == ppm[0] == 200 and raw[1]["probabilities"] == ppm[1]["probabilities"]
            status, doc = client.classify_npy(np.zeros((4, 4, 3), np.float32))
            assert status == 400 and "this model takes (8, 8, 3)" in doc["error"]
            status, doc = client.request("POST", "/v1/classify", b"abc", {"Content-Type": "application/octet-stream"})
            assert status == 400 and "X-Shape" in doc["error"]
            status, health = client.health()
            assert status == 200 and health["ready"] and health["release"] == "r1" and health["failed"] is None
            assert health["variant"] == "fp32" and health["uptime_s"] > 0 and health["swaps"] == 0
            assert client.request("GET", "/v1/nothing")[0] == 404
            assert client.request("POST", "/v1/classify")[0] == 411  # no body: then the service hangs up
            client.close()
    finally:
        assert serve.stop() == 0, serve.output()


def _load(serve: Serve, unix: bool, x: np.ndarray, stop: threading.Event, seen: list[tuple[int, str]]) -> None:
    client = serve.client(unix=unix)
    i = 0
    while not stop.is_set():
        try:
            status, doc = client.classify_npy(x[i % len(x)])
            seen.append((status, doc.get("release", "")))
        except Exception as exc:  # noqa: BLE001 - a dropped connection is a failed request, counted
            seen.append((0, repr(exc)))
            client.close()
            client = serve.client(unix=unix)
        i += 1
    client.close()


def test_hot_swap_under_continuous_load_fails_no_request(root: Path, payload: dict[str, Path]) -> None:
    x, _ = _sample(payload)
    serve = Serve(root, "--poll-s", "0.1")
    stop, results = threading.Event(), {False: [], True: []}
    loaders = [threading.Thread(target=_load, args=(serve, unix, x, stop, results[unix])) for unix in results]
    try:
        for t in loaders:
            t.start()
        time.sleep(0.5)
        switch(root, "r2")
        serve.wait_for(lambda h: h["release"] == "r2")
        time.sleep(0.5)
        switch(root, "r1")  # and back: two swaps under load
        serve.wait_for(lambda h: h["release"] == "r1" and h["swaps"] == 2)
        time.sleep(0.3)
    finally:
        stop.set()
        for t in loaders:
            t.join(30)
        code = serve.stop()
    assert code == 0, serve.output()
    for seen in results.values():
        failed = [s for s in seen if s[0] != 200]
        assert not failed and len(seen) > 20, (failed[:5], len(seen))
        releases = [r for _, r in seen]
        order = [r for i, r in enumerate(releases) if i == 0 or r != releases[i - 1]]
        assert order == ["r1", "r2", "r1"], order  # each client: served by r1, then r2, then r1 again


def test_a_broken_release_is_never_swapped_in(root: Path, payload: dict[str, Path]) -> None:
    x, _ = _sample(payload)
    switch(root, "garbage")
    serve = Serve(root, "--poll-s", "600", ready=False)  # only SIGHUP makes it look again
    client = serve.client()
    try:
        status, health = client.health()
        assert status == 503 and not health["ready"] and health["failed"]["release"] == "garbage"
        assert client.classify_npy(x[0])[0] == 503
        switch(root, "r1")
        serve.proc.send_signal(signal.SIGHUP)
        serve.wait_for(lambda h: h["ready"] and h["release"] == "r1")
        for broken, why in (("nan", "non-finite"), ("garbage", "ValueError")):
            switch(root, broken)
            serve.proc.send_signal(signal.SIGHUP)
            health = serve.wait_for(lambda h, b=broken: (h["failed"] or {}).get("release") == b)
            assert why in health["failed"]["why"], health
            assert health["release"] == "r1" and health["ready"]  # the old release keeps serving
            status, doc = client.classify_npy(x[0])
            assert status == 200 and doc["release"] == "r1"
        switch(root, "r2")
        serve.proc.send_signal(signal.SIGHUP)
        serve.wait_for(lambda h: h["release"] == "r2")
    finally:
        client.close()
        assert serve.stop() == 0, serve.output()


def _files(root: Path, suffix: str) -> list[Path]:
    return sorted(p for p in root.rglob(f"*{suffix}") if not p.name.startswith("."))


def test_telemetry_rotates_and_adds_up_and_samples_stay_in_budget(root: Path, payload: dict[str, Path]) -> None:
    x, _ = _sample(payload)
    budget = 20_000
    serve = Serve(root, "--telemetry-period-s", "1", "--telemetry-flush-s", "0.2", "--sample-threshold", "1.0",
                  "--sample-budget-mb", str(budget / 1024 / 1024))
    client, sent, deadline = serve.client(), 0, time.monotonic() + 2.5
    try:
        while time.monotonic() < deadline:
            assert client.classify_npy(x[sent % len(x)])[0] == 200
            sent += 1
            time.sleep(0.01)
        client.classify_npy(np.zeros((4, 4, 3), np.float32))  # one bad request, counted apart
    finally:
        client.close()
        assert serve.stop() == 0, serve.output()
    docs = [json.loads(p.read_text()) for p in _files(serve.state / "telemetry", ".json")]
    assert len({d["period_start"] for d in docs}) >= 3 and all(d["final"] for d in docs)  # rotated; closed at stop
    assert sum(d["requests"] for d in docs) == sent + 1 and sum(d["bad_requests"] for d in docs) == 1
    assert sum(sum(d["classes"].values()) for d in docs) == sent == sum(sum(d["confidence_bins"]) for d in docs)
    assert all(d["release"] == "r1" and d["errors"] == 0 for d in docs)
    busy = max(docs, key=lambda d: d["requests"])
    assert 0 < busy["latency_ms"]["p50"] <= busy["latency_ms"]["p95"] <= busy["latency_ms"]["p99"]
    samples = _files(serve.state / "samples", ".npz")
    assert 0 < len(samples) < sent and sum(p.stat().st_size for p in samples) <= budget
    for path in samples:
        assert path.name.split("-")[-1] == hashlib.sha256(path.read_bytes()).hexdigest() + ".npz"
        with np.load(path, allow_pickle=False) as s:
            assert str(s["kind"]) == "low" and str(s["release"]) == "r1" and s["x"].shape == (8, 8, 3)


def test_a_reactivated_release_starts_a_new_window_and_loses_nothing(tmp_path: Path) -> None:
    """A swap back to a release served earlier in the hour: the earlier window ends (final, its own file) and
    the new one names its activation, so a canary can count this activation's traffic alone."""
    telemetry = Telemetry(tmp_path / "telemetry", 3600, 1_000_000)
    for _ in range(5):
        telemetry.record("r1", 1.0, 0, 0.9)
    telemetry.flush()
    time.sleep(1.1)  # activation stamps have a resolution of one second
    telemetry.activated("r1")
    for _ in range(3):
        telemetry.record("r1", 1.0, None, None, 400)
    telemetry.flush()
    docs = sorted((json.loads(p.read_text()) for p in _files(tmp_path / "telemetry", ".json")),
                  key=lambda d: d["activated"])
    assert [(d["requests"], d["bad_requests"], d["final"]) for d in docs] == [(5, 0, True), (3, 3, False)]
    assert docs[0]["activated"] < docs[1]["activated"] and docs[0]["period_start"] == docs[1]["period_start"]


def test_reservoir_keeps_k_uniform_samples_per_period(tmp_path: Path) -> None:
    telemetry = Telemetry(tmp_path / "telemetry", 3600, 10_000)
    sampler = Sampler(tmp_path / "samples", 0.0, 3, 10_000_000, 3600, telemetry)
    for i in range(40):
        sampler.offer("r1", np.full((2, 2, 3), i, np.uint8), (0.2, 0.8), 1)
    sampler.close()
    kept = _files(tmp_path / "samples", ".npz")
    assert len(kept) == 3 and all("-reservoir-" in p.name for p in kept)
    values = sorted(int(np.load(p)["x"][0, 0, 0]) for p in kept)
    assert len(set(values)) == 3 and all(0 <= v < 40 for v in values)


def test_telemetry_keeps_to_its_disk_budget_oldest_first(tmp_path: Path) -> None:
    telemetry = Telemetry(tmp_path, 3600, 2_000)
    written: list[Any] = []
    for hour in range(12):  # twelve ended periods of one release, each written final
        w = telemetry._window("r1")
        w.start, w.requests = hour * 3600.0, hour + 1
        telemetry._open.pop("r1")
        telemetry._done.append(w)
        telemetry.flush()
        written.append(telemetry.path(w).name)
    kept = [p.name for p in _files(tmp_path, ".json")]
    assert 0 < len(kept) < 12 and sum(p.stat().st_size for p in _files(tmp_path, ".json")) <= 2_000
    assert kept == written[-len(kept):]  # the newest survive
