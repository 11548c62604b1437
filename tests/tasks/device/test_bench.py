"""tasks/device/bench.py run as the devices run it: a subprocess printing one JSON document."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import tiny_tflite_release

BENCH = Path(__file__).resolve().parents[3] / "tasks" / "device" / "bench.py"


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny classifier as fp32 and full-int8 TFLite files, plus a 64-image sample labelled by Keras."""
    files = tiny_tflite_release(tmp_path_factory.mktemp("bench"))
    return {"fp32": files["fp32.tflite"], "int8": files["int8.tflite"], "sample": files["sample.npz"]}


def _bench(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BENCH), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_bench_reports_schema_latency_and_accuracy(models: dict[str, Path]) -> None:
    proc = _bench(
        "--model", models["fp32"], "--model", models["int8"], "--sample", models["sample"],
        "--warmup", "10", "--runs", "100", "--threads", "2", "--label", "host",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)  # the whole stdout is one JSON document
    assert doc["schema"] == 1 and doc["label"] == "host" and doc["rss_scope"] == "per_model"
    device = doc["device"]
    assert device["arch"] == platform.machine()
    assert device["threads"] == 2 and device["cpu_count"] >= 1
    assert device["litert"]["package"] in ("ai-edge-litert", "tflite-runtime") and device["python"]
    assert set(doc["results"]) == {"fp32", "int8"}
    for result in doc["results"].values():
        lat = result["latency_ms"]
        assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"]
        assert lat["mean"] > 0 and lat["std"] >= 0
        assert result["runs"] == 100 and result["warmup"] == 10 and result["samples"] == 64
        assert 0.0 <= result["accuracy"] <= 1.0
        assert result["load_ms"] > 0 and result["peak_rss_mb"] > 10
    assert doc["results"]["fp32"]["accuracy"] == 1.0  # labels come from the same Keras model
    assert doc["results"]["int8"]["input_dtype"] == "int8"
    assert doc["results"]["fp32"]["input_dtype"] == "float32"


def test_in_process_mode_marks_rss_cumulative(models: dict[str, Path]) -> None:
    proc = _bench("--model", models["int8"], "--sample", models["sample"], "--runs", "100", "--in-process")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["rss_scope"] == "cumulative" and doc["results"]["int8"]["runs"] == 100


@pytest.mark.parametrize("missing", ["model", "sample"])
def test_missing_input_fails_clearly(models: dict[str, Path], tmp_path: Path, missing: str) -> None:
    model = tmp_path / "nope.tflite" if missing == "model" else models["fp32"]
    sample = tmp_path / "nope.npz" if missing == "sample" else models["sample"]
    proc = _bench("--model", model, "--sample", sample)
    assert proc.returncode != 0
    assert "missing file" in proc.stderr and "nope" in proc.stderr
    assert proc.stdout == ""


def test_sample_without_labels_fails_clearly(models: dict[str, Path], tmp_path: Path) -> None:
    np.savez(tmp_path / "bad.npz", x=np.zeros((2, 8, 8, 3), np.float32))
    proc = _bench("--model", models["fp32"], "--sample", tmp_path / "bad.npz", "--in-process")
    assert proc.returncode != 0 and "'y'" in proc.stderr


def test_smoke_passes_a_good_release(models: dict[str, Path]) -> None:
    proc = _bench("--smoke", "--model", models["fp32"], "--model", models["int8"], "--sample", models["sample"])
    assert proc.returncode == 0, proc.stderr
    smoke = json.loads(proc.stdout)["smoke"]
    assert smoke["fp32"] == {"ok": True, "output_shape": [1, 3]} and smoke["int8"]["ok"]


def test_smoke_rejects_nan_and_unloadable_models(models: dict[str, Path], tmp_path: Path) -> None:
    from tests.faults.payloads import garbage_tflite, nan_tflite

    nan, junk = nan_tflite(tmp_path / "nan.tflite"), garbage_tflite(tmp_path / "junk.tflite")
    proc = _bench("--smoke", "--model", models["fp32"], "--model", nan, "--model", junk, "--sample", models["sample"])
    assert proc.returncode == 3
    smoke = json.loads(proc.stdout)["smoke"]
    assert smoke["fp32"]["ok"] and not smoke["nan"]["ok"] and not smoke["junk"]["ok"]
    assert "3 non-finite value(s)" in smoke["nan"]["why"] and "did not load or run" in smoke["junk"]["why"]


def test_smoke_rejects_an_output_too_narrow_for_the_labels(models: dict[str, Path], tmp_path: Path) -> None:
    x = np.zeros((2, 8, 8, 3), np.float32)
    np.savez(tmp_path / "wide.npz", x=x, y=np.array([0, 7]))  # 8 classes, the model has 3 outputs
    proc = _bench("--smoke", "--model", models["fp32"], "--sample", tmp_path / "wide.npz")
    assert proc.returncode == 3 and "expected (1, >= 8)" in json.loads(proc.stdout)["smoke"]["fp32"]["why"]
