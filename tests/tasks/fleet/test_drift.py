"""Drift: the statistics against hand-computed values, the verdict rules, and (real MinIO) baseline metrics plus
collected telemetry written as the evaluate step and ``edgeops_collect`` write them."""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from tasks.core import keys
from tasks.core.exceptions import ConfigError
from tasks.core.manifest import EvaluationSummary
from tasks.core.metrics import EvalMetrics
from tasks.device.serve_records import Window, confidence_bin, stamp
from tasks.fleet import drift
from tasks.fleet.drift import Baseline, DriftSettings, chi_square_p, judge, psi
from tasks.fleet.inventory import Inventory
from tasks.fleet.telemetry import TelemetrySummary, aggregate
from tasks.steps.evaluate import confidence_histogram
from tests.tasks.fleet.conftest import FLEET
from tests.tasks.manifests import manifest

RUN, RELEASE, DEVICE = "run-drift", "run-drift.int8", "kitchen"
BASE_CLASSES = (50, 50)  # the test split's predictions: half class 0, half class 1
BASE_BINS = (0, 0, 0, 0, 0, 10, 10, 20, 20, 40)  # mostly confident


def _summary(classes: tuple[int, ...], bins: tuple[int, ...]) -> TelemetrySummary:
    return TelemetrySummary(DEVICE, RELEASE, None, 1, None, None, sum(bins), 0, 0, 0, classes, bins, None, None, None)


# --- statistics, by hand ----------------------------------------------------------------------------------------
def test_psi_by_hand() -> None:
    assert psi([50, 50], [50, 50]) == 0.0
    assert psi([90, 10], [50, 50]) == pytest.approx(0.4 * math.log(1.8) + 0.4 * math.log(5), abs=1e-9)  # 0.87889
    p = [1 / (1 + 1e-4), 1e-4 / (1 + 1e-4)]  # the empty bin at EPSILON, shares renormalised
    assert psi([100, 0], [50, 50]) == pytest.approx(sum((a - 0.5) * math.log(a / 0.5) for a in p), abs=1e-9)
    assert drift.EPSILON == 1e-4


def test_chi_square_by_hand() -> None:
    # (90-50)^2/50 + (10-50)^2/50 = 64 on 1 degree of freedom: p = erfc(sqrt(64 / 2))
    assert chi_square_p([90, 10], [50, 50]) == pytest.approx(math.erfc(math.sqrt(32)), rel=1e-6)
    assert chi_square_p([50, 50], [500, 500]) == pytest.approx(1.0)


def test_confidence_bins_match_the_service() -> None:
    assert [confidence_bin(c) for c in (0.0, 0.0999, 0.1, 0.55, 0.95, 1.0)] == [0, 0, 1, 5, 9, 9]
    assert confidence_histogram([0.05, 0.5, 0.99, 1.0]) == [1, 0, 0, 0, 0, 1, 0, 0, 0, 2]


# --- verdicts -----------------------------------------------------------------------------------------------------
def test_verdicts() -> None:
    base, settings = Baseline(BASE_CLASSES, BASE_BINS), DriftSettings(min_requests=100)
    same = judge(_summary((100, 100), tuple(2 * b for b in BASE_BINS)), base, settings)
    assert same.status == "ok" and same.psi_class == 0 and same.psi_confidence == 0 and same.n == 200
    assert same.cell() == "ok 0.00"
    shifted = judge(_summary((190, 10), (0, 0, 0, 40, 80, 40, 20, 10, 5, 5)), base, settings)
    assert shifted.status == "drift" and shifted.psi_class > 0.25 and shifted.psi_confidence > 0.25
    assert "class PSI" in shifted.reason and "confidence PSI" in shifted.reason
    few = judge(_summary((5, 5), (0, 0, 0, 0, 0, 0, 0, 0, 0, 10)), base, settings)
    assert few.status == "insufficient" and few.psi_class is None and "at least 100" in few.reason
    assert few.cell() == "insufficient (10 req)"
    unseen = judge(_summary((100, 100, 100), tuple(3 * b for b in BASE_BINS)), base, settings)  # class 2: new
    assert unseen.status == "drift" and unseen.psi_confidence == 0
    old = judge(_summary((190, 10), tuple(2 * b for b in BASE_BINS)), Baseline(BASE_CLASSES, None), settings)
    assert old.status == "drift" and old.psi_confidence is None and "classes only" in old.reason
    chi = judge(_summary((110, 90), tuple(2 * b for b in BASE_BINS)), base, DriftSettings(min_requests=100))
    assert chi.status == "ok" and chi.p_class < 0.2  # a small shift: under the PSI threshold
    assert judge(_summary((110, 90), tuple(2 * b for b in BASE_BINS)), base,
                 DriftSettings(min_requests=100, alpha=0.5)).status == "drift"  # p-values decide when alpha > 0


def test_settings_are_validated_in_the_fleet_file() -> None:
    raw = json.loads(json.dumps(FLEET))
    group = next(iter(raw["groups"]))
    raw["groups"][group]["drift"] = {"psi": 0.1, "min_requests": 50}
    inventory = Inventory.from_dict(raw)
    assert inventory.group(group).drift == DriftSettings(psi=0.1, min_requests=50)
    assert Inventory.from_dict(inventory.to_dict()) == inventory
    for bad in ({"psi": 0}, {"min_requests": 0}, {"alpha": 1}, {"window": 3}, {"psi": "x"}, {"min_requests": 1.5}):
        raw["groups"][group]["drift"] = bad
        with pytest.raises(ConfigError, match="drift"):
            Inventory.from_dict(raw)


def test_older_metrics_have_no_confidence_bins() -> None:
    doc = _metrics_doc()
    del doc["variants"]["int8"]["confidence_bins"]
    assert EvalMetrics.from_dict(doc).variants["int8"].confidence_bins is None
    assert EvalMetrics.from_dict(_metrics_doc()).variants["int8"].confidence_bins == BASE_BINS


# --- on the real MinIO ------------------------------------------------------------------------------------------
def _metrics_doc() -> dict:
    figures = {"accuracy": 0.9, "size_bytes": 100, "input_dtype": "int8", "agreement": 1.0,
               "latency_ms": {"p50": 1.0, "p90": 1.0, "p99": 1.0, "mean": 1.0, "runs": 1},
               "confidence_bins": list(BASE_BINS)}
    preds = [0] * BASE_CLASSES[0] + [1] * BASE_CLASSES[1]
    return {"test_examples": 100, "keras": {"accuracy": 0.9, "size_bytes": 100}, "variants": {"int8": figures},
            "classes": ["cat", "dog"], "labels": preds, "predictions": {"int8": preds}}


def _publish_baseline(store) -> None:
    art = store.put_json(keys.evaluation(RUN), _metrics_doc())
    m = manifest(RUN, evaluation=EvaluationSummary(100, 0.9, store.ref(art)))
    store.put_json(keys.manifest(RUN), m.to_dict())


def _collected(store, name: str, classes: list[int], confidences: list[float], start: float | None = None) -> None:
    """One final telemetry file as edgeops-serve writes it and collect uploads it."""
    now = time.time()
    w = Window(RELEASE, start if start is not None else now - now % 3600)
    for index, conf in zip(classes, confidences, strict=True):
        w.requests += 1
        w.latencies.append(2.0)
        w.classes[index] += 1
        w.confidence[confidence_bin(conf)] += 1
    store.put_bytes(keys.telemetry(DEVICE, RELEASE, f"{stamp(w.start)}-{name}.json"),
                    json.dumps(w.doc(3600, True)).encode())


@pytest.mark.integration
def test_drift_on_collected_telemetry(fleet_store) -> None:
    _publish_baseline(fleet_store)
    settings = DriftSettings(min_requests=100)
    _collected(fleet_store, "few", [0, 1] * 10, [0.95] * 20)
    few = drift.check(fleet_store, DEVICE, RELEASE, settings)
    assert few.status == "insufficient" and few.n == 20

    normal = [0.95] * 40 + [0.85] * 20 + [0.75] * 20 + [0.65] * 10 + [0.55] * 10  # the baseline's shape
    _collected(fleet_store, "normal", [0, 1] * 100, normal * 2)
    ok = drift.check(fleet_store, DEVICE, RELEASE, settings)
    assert ok.status == "ok" and ok.n == 220 and ok.psi_class < 0.01 and ok.psi_confidence < 0.05, ok

    _collected(fleet_store, "shifted", [0] * 600, [0.35] * 600)  # all inputs of one kind, unsure
    shifted = drift.check(fleet_store, DEVICE, RELEASE, settings)
    assert shifted.status == "drift" and shifted.n == 820 and shifted.psi_class > 0.25, shifted
    assert shifted.to_xcom()["status"] == "drift"  # the asset event's extra

    verdicts = [ok, shifted, shifted]
    assert [v.status for v in drift.record(fleet_store, verdicts)] == ["drift"]  # newly drifting once, not twice
    assert drift.DriftVerdict.from_xcom(fleet_store.get_json(keys.device_drift(DEVICE))) == shifted

    later = datetime.now(UTC) + timedelta(hours=30)  # a window past every file
    assert drift.check(fleet_store, DEVICE, RELEASE, settings, now=later).n == 0
    assert drift.check(fleet_store, DEVICE, "nomanifest.int8", settings).reason.startswith("no baseline")


@pytest.mark.integration
def test_aggregate_sums_files_in_the_window(fleet_store) -> None:
    now = time.time()
    hour = now - now % 3600
    _collected(fleet_store, "aaa", [0, 1, 1], [0.95, 0.45, 0.15], start=hour)
    _collected(fleet_store, "bbb", [2], [1.0], start=hour - 3600)
    _collected(fleet_store, "old", [0] * 5, [0.5] * 5, start=hour - 48 * 3600)
    fleet_store.put_bytes(keys.telemetry(DEVICE, RELEASE, f"{stamp(hour)}-bad.json"), b"{\"schema\": 7}")
    s = aggregate(fleet_store, DEVICE, RELEASE, datetime.fromtimestamp(hour - 3600, UTC))
    assert (s.files, s.requests, s.predictions, s.classes) == (2, 4, 4, (1, 2, 1))
    assert s.confidence_bins == (0, 1, 0, 0, 1, 0, 0, 0, 0, 2) and s.latency_p95_ms == 2.0
    assert s.first_period == stamp(hour - 3600) and s.last_period == stamp(hour)
    assert len(s.unreadable) == 1 and "bad.json" in s.unreadable[0] and "schema 1" in s.unreadable[0]
    assert s.mean_confidence == pytest.approx((0.95 + 0.45 + 0.15 + 0.95) / 4)
    assert aggregate(fleet_store, DEVICE, RELEASE).files == 3
    assert Counter(aggregate(fleet_store, DEVICE, "other.fp32").classes) == Counter()


def test_baseline_bins_are_what_the_service_bins(tmp_path) -> None:
    """The evaluate step's histogram of a model's test images equals what edgeops-serve records for them."""
    import numpy as np

    from tasks.device.serve_model import XNNPACK, Model
    from tasks.steps.evaluate import TFLiteModel
    from tests.helpers import tiny_tflite_release
    from tests.serve_helpers import make_release

    files = tiny_tflite_release(tmp_path, samples=32)
    x = np.load(files["sample.npz"])["x"]
    for variant in ("fp32", "int8"):
        release = make_release(tmp_path / variant, "r", {f"{variant}.tflite": files[f"{variant}.tflite"]}, variant)
        served = [Model(str(release), 1, XNNPACK, {}).classify(img) for img in x]
        indices, confidences = TFLiteModel(files[f"{variant}.tflite"].read_bytes()).scores(x, 8)
        assert [int(i) for i in indices] == [p.index for p in served]
        service_bins = [0] * 10
        for p in served:
            service_bins[confidence_bin(p.confidence)] += 1
        assert confidence_histogram(confidences) == service_bins
