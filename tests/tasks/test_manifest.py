"""RunManifest and EvalMetrics: one writer, one decoder, older schemas still read, garbage refused clearly."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from tasks.core.exceptions import RecordError
from tasks.core.manifest import SCHEMA, RunManifest
from tasks.core.metrics import EvalMetrics
from tests.tasks.manifests import manifest, variant, verdict

DATA = Path(__file__).parent / "data"


def _fixture(schema: int) -> dict:
    return json.loads((DATA / f"manifest_schema{schema}.json").read_text())


def test_round_trip_through_json() -> None:
    m = manifest("r1", {"fp32": variant(0.97, sample_accuracy=0.9), "int8": variant(0.95, 300, passed=False)},
                 verdict(True, ("fp32",), "fp32"))
    raw = json.loads(json.dumps(m.to_dict()))
    assert raw["schema"] == SCHEMA == 3 and "devices" not in raw and "legacy_gate" not in raw
    assert RunManifest.from_dict(raw) == m


def test_schema_3_as_written() -> None:
    raw = _fixture(3)
    m = RunManifest.from_dict(raw)
    assert (m.schema, m.blessed, m.current, m.deploy) == (3, True, "int8", ("fp32", "int8"))
    assert m.gate is not None and m.gate.champion is not None and m.gate.champion.candidate_accuracy == 0.97
    assert m.variants["int8"].sample_accuracy == 0.9375 and m.variants["int8"].gate.only_fp32_right == 2
    assert m.artifact("tflite/fp32.tflite").size_bytes == 16000 and m.devices == ()
    assert _contains(m.to_dict(), raw)  # the writer writes everything it read, unchanged (plus newer defaults)
    assert RunManifest.from_dict(m.to_dict()) == m


def _contains(written: object, raw: object) -> bool:
    """Every key and value of ``raw`` is in ``written`` (fields added later may be there too, with defaults)."""
    if isinstance(raw, dict):
        return isinstance(written, dict) and all(k in written and _contains(written[k], v) for k, v in raw.items())
    if isinstance(raw, list):
        return isinstance(written, list) and len(written) == len(raw) and all(
            _contains(w, r) for w, r in zip(written, raw, strict=True))
    return written == raw


def test_schema_2_keeps_its_device_benchmarks_and_drops_the_gates_device_list() -> None:
    m = RunManifest.from_dict(_fixture(2))
    assert (m.schema, m.blessed, m.current, m.profile, m.source) == (2, True, "int8", "demo", "s3://datasets/digits")
    assert m.input_shape == (32, 3) and m.classes == ("0", "1")
    assert m.train is not None and m.train.source is None and m.evaluation.test_examples == 100
    assert m.variants["int8"].sample_accuracy is None  # written before it was measured
    assert m.gate is not None and m.gate.rescued == {} and m.gate.champion is None
    (pi1,) = m.devices
    assert pi1.current.latency_ms["p50"] == 6.5 and pi1.current.threads is None
    assert RunManifest.from_dict(json.loads(json.dumps(m.to_dict()))) == replace(m, schema=3)  # rewritten as 3


def test_schema_1_reads_what_was_deployed_as_blessed() -> None:
    m = RunManifest.from_dict(_fixture(1))
    assert (m.schema, m.gate, m.train, m.blessed, m.deploy, m.current) == (1, None, None, True, ("fp32",), "fp32")
    assert m.evaluation.keras_accuracy == 0.95 and m.evaluation.test_examples is None
    fp32 = m.variants["fp32"]
    assert (fp32.latency_p50_ms, fp32.gzip_bytes, fp32.gate.passed) == (0.5, None, True)
    assert m.input_shape == (32, 3) and m.devices == ()
    with pytest.raises(RecordError, match="no gate verdict"):
        m.verdict  # noqa: B018
    assert RunManifest.from_dict(json.loads(json.dumps(m.to_dict()))) == replace(m, schema=3)


@pytest.mark.parametrize("raw, match", [
    ("not json", "expected a JSON object, got str"),
    ({"run_id": "r"}, r"schema None \(this code reads 1, 2 and 3\)"),
    ({"schema": 9, "run_id": "r"}, "schema 9"),
    ({"schema": 3, "run_id": "r"}, r"not a schema-3 run manifest: missing \['code_version'"),
])
def test_garbage_is_one_clear_error(raw, match) -> None:
    with pytest.raises(RecordError, match=match) as err:
        RunManifest.from_dict(raw, "s3://artifacts/runs/r/manifest.json")
    assert str(err.value).startswith("s3://artifacts/runs/r/manifest.json: ")


def test_a_wrong_nested_record_names_the_manifest() -> None:
    raw = _fixture(3)
    raw["variants"]["int8"]["colour"] = "blue"
    with pytest.raises(RecordError, match=r"manifest.json: not a schema-3 run manifest: .*unknown \['colour'\]"):
        RunManifest.from_dict(raw)
    raw = _fixture(3)
    raw["artifacts"] = [{"key": "x"}]
    with pytest.raises(RecordError, match="ManifestArtifact"):
        RunManifest.from_dict(raw)


def _metrics(**more) -> dict:
    lat = {"p50": 1.0, "p90": 1.5, "p99": 2.0, "mean": 1.1, "runs": 50}
    variants = {m: {"accuracy": a, "size_bytes": s, "gzip_bytes": s - 1, "latency_ms": lat, "latency_label": "host",
                    "input_dtype": "float32", "agreement": 1.0, "sample_accuracy": a} for m, a, s in
                (("fp32", 1.0, 40), ("int8", 0.5, 10))}
    return {"test_examples": 2, "keras": {"accuracy": 1.0, "size_bytes": 99, "format": "keras"}, "variants": variants,
            "classes": ["a", "b"], "latency_label": "host", "labels": [0, 1], "predictions": {"fp32": [0, 1],
            "int8": [0, 0]}, "champion": {"run_id": "r0", "fp32": None, "accuracy": 0.5, "predictions": [1, 1],
                                          "skipped": ""}, **more}


def test_metrics_round_trip_and_older_evaluations() -> None:
    m = EvalMetrics.from_dict(_metrics())
    assert _contains(m.to_dict(), _metrics()) and m.champion.predictions == (1, 1)
    assert m.variants["int8"].latency_ms.p50 == 1.0
    old = _metrics(champion=None)
    old["keras"].pop("format")
    for v in old["variants"].values():
        v.pop("gzip_bytes"), v.pop("sample_accuracy")
    m = EvalMetrics.from_dict(old)
    assert m.champion is None and m.keras.format == "keras" and m.variants["int8"].gzip_or_size == 10


def test_metrics_garbage_is_one_clear_error() -> None:
    with pytest.raises(RecordError, match=r"metrics.json: not an evaluation's metrics: missing \['classes'"):
        EvalMetrics.from_dict({"test_examples": 1}, "s3://a/runs/r/eval/metrics.json")
    with pytest.raises(RecordError, match="expected a JSON object"):
        EvalMetrics.from_dict([1, 2])
    bad = _metrics()
    bad["labels"] = ["x"]
    with pytest.raises(RecordError, match="not an evaluation's metrics"):
        EvalMetrics.from_dict(bad)
