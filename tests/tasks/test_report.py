"""Unit tests of the HTML report: no object store, no network."""

from __future__ import annotations

import copy
import re

import pytest

from tasks.core.manifest import RunManifest
from tasks.report import run_report
from tests.tasks.manifests import manifest as build_manifest

IMG = re.compile(r'<img [^>]*src="data:image/png;base64,[A-Za-z0-9+/=]{100,}"')


def _bench(p50: float) -> dict:
    return {"latency_ms": {"p50": p50, "p90": p50 * 1.2, "p99": p50 * 1.5}, "accuracy": 0.965,
            "load_ms": 12.5, "peak_rss_mb": 48.2, "samples": 64, "input_dtype": "int8", "size_bytes": 10}


def _variant(acc: float, size: int, p50: float, p90: float, agreement: float, passed: bool) -> dict:
    return {"accuracy": acc, "size_bytes": size, "gzip_bytes": size * 9 // 10, "latency_p50_ms": p50,
            "latency_p90_ms": p90, "agreement": agreement, "latency_label": "host",
            "gate": {"passed": passed, "drop_pp": round((0.97 - acc) * 100, 4), "reasons": [], "p_value": None}}


def _render(raw: dict, history: list | None = None) -> str:
    return run_report.render_html(RunManifest.from_dict(raw), history)


@pytest.fixture
def manifest() -> dict:
    variants = {
        "fp32": _variant(0.97, 16_000_000, 9.1, 9.8, 1.0, True),
        "fp16": _variant(0.9695, 8_000_000, 9.3, 10.1, 0.999, True),
        "dynamic": _variant(0.968, 4_200_000, 7.0, 7.7, 0.995, True),
        "int8": _variant(0.95, 4_300_000, 5.2, 5.9, 0.98, False),
    }
    record = {"uri": "s3://artifacts/runs/r1/devices/pi1.json", "sha256": "cd" * 32, "size_bytes": 1}
    ref = {"uri": "s3://artifacts/runs/r1/x", "sha256": "ab" * 32, "size_bytes": 1, "version_id": None}
    return {  # a schema-2 manifest as publish wrote it (device benchmarks in the manifest, gate.devices)
        "schema": 2, "run_id": "scheduled__2026-01-01T02_00_00_00_00", "code_version": "0123456789abcdef",
        "created_at": "2026-01-01T02:41:00+00:00", "config": {"profile": "seed"},
        "dataset": {"source": "tfds:cats_vs_dogs", "classes": ["cat", "dog"],
                    "counts": {"train": 16000, "val": 4600, "test": 2300}},
        "artifacts": [{"name": "fp32.tflite", "key": "runs/x/tflite/fp32.tflite", "sha256": "ab" * 32,
                       "size_bytes": 16_000_000}],
        "variants": variants,
        "train": {"model": ref, "keras_test_accuracy": 0.971, "best_val_accuracy": 0.97, "epochs_run": 3},
        "evaluation": {"keras_accuracy": 0.971, "test_examples": 2300, "metrics": ref},
        "gate": {"blessed": True, "max_accuracy_drop_pp": 1.0, "deploy": ["dynamic", "fp16"], "current": "dynamic",
                 "reasons": ["dynamic, fp16 within 1.0 pp of fp32"], "variants": {}, "sample": ref,
                 "tflite": {"dynamic": ref, "fp16": ref}, "devices": ["pi1", "pi-real"]},
        "devices": [
            {"device": "pi1", "arch": "x86_64", "release": "r1", "current_variant": "dynamic", "label": "host",
             "record": record, "models": {"dynamic": _bench(6.5), "fp16": _bench(8.8)}},
            {"device": "pi-real", "arch": "aarch64", "release": "r1", "current_variant": "dynamic",
             "label": "native", "record": record, "models": {"dynamic": _bench(41.0)}},
        ],
    }


def test_full_manifest_has_charts_tables_and_device_rows(manifest: dict) -> None:
    page = _render(manifest)
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert len(IMG.findall(page)) == 3
    assert page.count("<img") == 3
    assert "host latency, not device" in page.lower()
    for mode in ("fp32", "fp16", "dynamic", "int8"):
        assert f"<td class=\"l\">{mode}" in page
    assert "dynamic (current)" in page
    assert "-2.00 pp" not in page and "+2.00 pp" in page  # int8 drop: 97.00 -> 95.00
    assert 'class="fail"' in page and 'class="pass"' in page
    assert "keras (reference)" in page
    # device rows: pi1 has two benchmarked modes, pi-real one
    assert page.count('<td class="l">pi1</td>') == 2
    assert page.count('<td class="l">pi-real</td>') == 1
    assert "native" in page and "41.000" in page and "48.2" in page
    assert "not Raspberry Pi figures" in " ".join(page.split())
    assert "tfds:cats_vs_dogs" in page and "seed" in page and "0123456789abcdef" in page
    assert "http://" not in page and "https://" not in page  # self-contained


def test_no_devices_and_missing_variants(manifest: dict) -> None:
    m = copy.deepcopy(manifest)
    m["devices"] = []
    del m["variants"]["fp16"], m["variants"]["int8"]
    m["variants"]["dynamic"].update(latency_p50_ms=None, latency_p90_ms=None)
    page = _render(m)
    assert page.count("<img") == 3
    assert "No device results" in page and "<h2>Devices</h2>" in page
    assert '<td class="l">fp16' not in page and '<td class="l">int8' not in page
    assert '<td class="l">fp32' in page and '<td class="l">dynamic (current)' in page
    assert "—" in page  # dynamic's missing latency shows as a dash, not a crash


def test_minimal_manifest_renders() -> None:
    page = run_report.render_html(build_manifest("r0", variants={}))
    assert "No variants were evaluated" in page and "No device results" in page
    assert "<img" not in page


def test_text_is_escaped(manifest: dict) -> None:
    m = copy.deepcopy(manifest)
    m["run_id"] = '<script>alert("x")</script>'
    m["devices"][0]["device"] = "<b>evil</b>"
    m["dataset"]["classes"] = ["<img src=x onerror=alert(1)>"]
    page = _render(m)
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "<b>evil</b>" not in page and "&lt;b&gt;evil&lt;/b&gt;" in page
    assert "onerror=alert(1)>" not in page
    assert page.count("<img") == 3


def test_run_uploads_html(manifest: dict) -> None:
    class FakeStore:
        def __init__(self) -> None:
            self.calls: list[tuple] = []

        def put_bytes(self, key, data, name=None, content_type=""):
            self.calls.append((key, data, name, content_type))
            return run_report.Artifact(name or "index.html", key, "0" * 64, len(data))

    store = FakeStore()
    art = run_report.run(store, "r42", RunManifest.from_dict(manifest))  # type: ignore[arg-type]
    (key, data, _, ctype), = store.calls
    assert key == "runs/r42/report/index.html" == art.key
    assert ctype.startswith("text/html")
    assert data.decode("utf-8") == _render(manifest)


def test_gate_reasons_and_history_trend(manifest: dict) -> None:
    from tasks.report.history import history_rows

    older = copy.deepcopy(manifest)
    older["run_id"], older["created_at"] = "r-older", "2025-12-31T02:41:00+00:00"
    this = RunManifest.from_dict(manifest)
    page = run_report.render_html(this, history_rows([RunManifest.from_dict(older)], this))
    assert "BLESSED" in page and "within 1.0 pp of fp32" in page
    assert "<h2>History</h2>" in page and "r-older (champion)" in page
    assert page.count("<img") == 5  # three variant charts + two trend charts


def test_unblessed_run_says_nothing_was_deployed(manifest: dict) -> None:
    m = copy.deepcopy(manifest)
    m["gate"].update(blessed=False, deploy=[], current=None, reasons=["fp32 accuracy 0.33 < floor 0.90"])
    m["devices"] = []
    page = _render(m)
    assert "NOT BLESSED" in page and "devices keep their release" in page and "floor 0.90" in page


def test_history_compares_only_runs_on_the_same_data(manifest: dict) -> None:
    from tasks.report.history import history_rows

    other = copy.deepcopy(manifest)
    other["run_id"], other["dataset"]["source"] = "r-other-data", "s3://datasets/digits"
    rows = history_rows([RunManifest.from_dict(other)], RunManifest.from_dict(manifest))
    assert [r["run_id"] for r in rows] == [manifest["run_id"]]


def test_device_rows_show_the_delegate_and_threads(manifest: dict) -> None:
    m = copy.deepcopy(manifest)
    models = m["devices"][0]["models"]
    models["dynamic"].update(threads=4, delegate={"name": "xnnpack", "builtin": True, "partitions": 1})
    models["fp16"].update(threads=1, delegate={"name": "libedgetpu.so.1", "builtin": False, "partitions": 0})
    page = _render(m)
    assert "delegate × threads" in page and "xnnpack × 4" in page
    assert "libedgetpu.so.1 × 1 (0 partitions: CPU ran it)" in page
    assert page.count('<td class="l">—</td>') >= 1  # pi-real's record predates delegates


def test_per_class_view_and_inconclusive_variants(manifest: dict) -> None:
    raw = copy.deepcopy(manifest)
    for v in raw["variants"].values():
        v["class_recall"] = [0.98, 0.96]
        v["confusion"] = [[1127, 23], [46, 1104]]
    raw["variants"]["int8"]["gate"].update(finding="inconclusive", examples_needed=4100, drop_upper_pp=1.8)
    page = _render(raw)
    assert "<h2>Per class</h2>" in page and "Confusion matrix: int8" in page and "Recall per class" in page
    assert len(IMG.findall(page)) >= 3 + 1 + len(raw["variants"])  # variant charts, recall bars, heat maps
    assert "inconclusive (~4100 images)" in page and "+1.80 pp" in page
    assert "<th>ships</th>" in page and "deployed" not in page.split("<h2>Variants</h2>")[1].split("</table>")[0]
    old = _render(manifest)
    assert "No per-class figures in this run" in old
