"""Hand-off records survive the XCom round trip and refuse shapes they do not declare."""

from __future__ import annotations

import json

import pytest

from tasks.core.exceptions import RecordError
from tasks.core.results import ArtifactRef, BenchmarkResult, DelegateRun, EvaluateResult, ModelBench, VariantMetrics
from tasks.core.verdict import GateVerdict, VariantVerdict

REF = ArtifactRef("s3://artifacts/runs/r/tflite/fp32.tflite", "ab" * 32, 1234, "v1")


def _bench(**extra) -> dict:
    return {"latency_ms": {"p50": 1.0, "p90": 2.0, "p99": 3.0, "mean": 1.2, "std": 0.1}, "accuracy": 0.9,
            "load_ms": 4.0, "peak_rss_mb": 50.0, "samples": 64, "input_dtype": "float32", "size_bytes": 10, **extra}


def test_nested_records_round_trip_through_json():
    ev = EvaluateResult(metrics=REF, sample=REF, test_examples=10, keras_accuracy=0.9,
                        variants={"fp32": VariantMetrics(0.9, 10, 8, 1.0, 0.1, 0.2)}, tflite={"fp32": REF})
    again = EvaluateResult.from_xcom(json.loads(json.dumps(ev.to_xcom())))
    assert again == ev and isinstance(again.variants["fp32"], VariantMetrics)


def test_tuples_and_optionals_are_rebuilt():
    verdict = GateVerdict(blessed=True, deploy=("fp32",), current="fp32", reasons=("ok",),
                          variants={"fp32": VariantVerdict(True, 0.0)}, tflite={"fp32": REF}, sample=REF,
                          max_accuracy_drop_pp=1.0)
    again = GateVerdict.from_xcom(json.loads(json.dumps(verdict.to_xcom())))
    assert again == verdict and again.deploy == ("fp32",) and again.variants["fp32"].p_value is None


def test_missing_and_unknown_keys_are_one_clear_error():
    raw = REF.to_xcom()
    del raw["sha256"]
    with pytest.raises(RecordError, match=r"missing \['sha256'\]"):
        ArtifactRef.from_xcom(raw)
    with pytest.raises(RecordError, match=r"unknown \['extra'\]"):
        ArtifactRef.from_xcom({**REF.to_xcom(), "extra": 1})


def test_inconsistent_blessed_verdict_is_refused():
    with pytest.raises(RecordError, match="inconsistent"):
        GateVerdict(blessed=True, deploy=("int8",), current="int8", reasons=(), variants={}, tflite={},
                     sample=REF, max_accuracy_drop_pp=1.0)


def test_model_bench_keeps_declared_fields_of_bench_output():
    bench = ModelBench.from_bench(_bench(runs=100, warmup=10))
    result = BenchmarkResult("pi1", "x86_64", "r", "fp32", "host", REF, {"fp32": bench})
    assert result.current.accuracy == 0.9 and "p50 1.000 ms" in result.summary()


def test_model_bench_records_the_delegate_and_old_records_still_decode():
    delegate = {"name": "libedgetpu.so.1", "builtin": False, "path": "/usr/lib/libedgetpu.so.1",
                "options": {"device": "usb"}, "model_nodes": 4, "partitions": 1, "fallback_partitions": 0}
    bench = ModelBench.from_bench(_bench(threads=1, delegate=delegate))
    assert bench.delegate == DelegateRun(**delegate) and bench.threads == 1
    again = ModelBench.from_xcom(json.loads(json.dumps(bench.to_xcom())))
    assert again == bench and isinstance(again.delegate, DelegateRun)
    result = BenchmarkResult("pi1", "aarch64", "r", "int8", "native", REF, {"int8": bench})
    assert "int8 (libedgetpu.so.1, 1 partition(s), 1 thread(s))" in result.summary()
    old = ModelBench.from_xcom(_bench())  # a record from before bench.py recorded delegates
    assert old.delegate is None and old.threads is None
    assert "thread" not in BenchmarkResult("pi1", "x86_64", "r", "fp32", "host", REF, {"fp32": old}).summary()
