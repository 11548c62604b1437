"""Test manifests: a complete schema-3 manifest as publish writes it, with the figures each test needs."""

from __future__ import annotations

from typing import Any

from tasks.core.manifest import EvaluationSummary, ManifestVariant, RunManifest, TrainSummary
from tasks.core.results import ArtifactRef, BenchmarkResult
from tasks.core.verdict import GateVerdict, VariantVerdict

REF = ArtifactRef("s3://artifacts/x", "0" * 64, 1)


def variant(accuracy: float, size_bytes: int = 1000, passed: bool | None = True, **figures: Any) -> ManifestVariant:
    gate = None if passed is None else VariantVerdict(passed, figures.pop("drop_pp", 0.0), **figures.pop("gate", {}))
    defaults = {"gzip_bytes": size_bytes * 9 // 10, "agreement": 1.0, "latency_p50_ms": 1.0, "latency_p90_ms": 1.2}
    return ManifestVariant(accuracy, size_bytes, **{**defaults, **figures}, gate=gate)


def verdict(blessed: bool = True, deploy: tuple[str, ...] = ("fp32",), current: str | None = "fp32",
            reasons: tuple[str, ...] = (), **more: Any) -> GateVerdict:
    modes = set(deploy) | {"fp32"}
    return GateVerdict(blessed, deploy if blessed else (), current if blessed else None, reasons,
                       {m: VariantVerdict(True, 0.0) for m in modes}, {m: REF for m in modes}, REF,
                       more.pop("max_accuracy_drop_pp", 1.0), **more)


def manifest(run_id: str = "run1", variants: dict[str, ManifestVariant] | None = None,
             gate: GateVerdict | None = None, source: str = "s3://d", classes: tuple[str, ...] = ("0", "1"),
             devices: tuple[BenchmarkResult, ...] = (), **more: Any) -> RunManifest:
    fields: dict[str, Any] = {
        "code_version": "0123456789abcdef", "created_at": "2026-01-01T02:41:00+00:00",
        "config": {"profile": "seed", "data": {"image_size": 32, "channels": 3}},
        "dataset": {"source": source, "classes": list(classes), "counts": {"train": 8, "test": 2}},
        "train": TrainSummary(REF, 0.97, 0.96, 3),
        "evaluation": EvaluationSummary(2300, 0.971, REF),
    }
    return RunManifest(run_id=run_id, variants=variants if variants is not None else {"fp32": variant(0.97)},
                       gate=gate if gate is not None else verdict(), devices=devices, **{**fields, **more})
