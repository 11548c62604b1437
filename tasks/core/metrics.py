"""``runs/<id>/eval/metrics.json``: everything the evaluate step measured, as one record.

``EvalMetrics.to_dict`` is the one writer (tasks.steps.evaluate), ``EvalMetrics.from_dict`` the one decoder
(the gate, benchmarks/quantization.py). Fields that older evaluate steps did not write have defaults:
``gzip_bytes`` (None), ``sample_accuracy`` (None), ``class_recall``/``confusion``/``confidence_bins`` (None),
``keras.format`` ("keras") and ``champion`` (None).
Anything else missing, or a key no version ever wrote, is a RecordError.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Self

from tasks.core.exceptions import RecordError
from tasks.core.results import ArtifactRef, Record


@dataclass(frozen=True)
class HostLatency(Record):
    """Batch-1 latency on the build host (label ``host``), never a device figure."""

    p50: float
    p90: float
    p99: float
    mean: float
    runs: int


@dataclass(frozen=True)
class EvalVariant(Record):
    accuracy: float
    size_bytes: int
    latency_ms: HostLatency
    input_dtype: str
    agreement: float | None  # share of test images where it predicts what fp32 predicts (None: no fp32)
    gzip_bytes: int | None = None  # None: an evaluation from before gzip sizes were measured
    latency_label: str = "host"
    sample_accuracy: float | None = None  # on the device sample (None: written before it was measured)
    class_recall: tuple[float, ...] | None = None  # recall per class (classes' order); None: not measured
    confusion: tuple[tuple[int, ...], ...] | None = None  # [true class][predicted class] counts on the test split
    # the test split's top-probability histogram, edgeops-serve's bins (serve_records.confidence_bin): the drift
    # baseline; None: written before it was measured
    confidence_bins: tuple[int, ...] | None = None

    @property
    def gzip_or_size(self) -> int:
        """The gzip size, or the plain size for an evaluation that did not measure it."""
        return self.size_bytes if self.gzip_bytes is None else self.gzip_bytes


@dataclass(frozen=True)
class ReferenceFigures(Record):
    """The run's model before conversion (the .keras file, or a SavedModel source's serving signature)."""

    accuracy: float
    size_bytes: int
    format: str = "keras"  # keras | saved_model


@dataclass(frozen=True)
class ChampionEval(Record):
    """The blessed champion's fp32 on this run's test images, or why it was not evaluated (``skipped``)."""

    run_id: str | None = None
    fp32: ArtifactRef | None = None
    accuracy: float | None = None
    predictions: tuple[int, ...] | None = None
    skipped: str = ""


@dataclass(frozen=True)
class EvalMetrics:
    test_examples: int
    keras: ReferenceFigures
    variants: dict[str, EvalVariant]
    classes: tuple[str, ...]
    labels: tuple[int, ...]  # the test split's labels, in order
    predictions: dict[str, tuple[int, ...]]  # variant -> predicted class per test image
    champion: ChampionEval | None = None  # None: no earlier blessed run (or an evaluation from before champions)
    latency_label: str = "host"

    def to_dict(self) -> dict[str, Any]:
        return {"test_examples": self.test_examples, "keras": self.keras.to_xcom(),
                "variants": {m: v.to_xcom() for m, v in self.variants.items()}, "classes": list(self.classes),
                "latency_label": self.latency_label, "labels": list(self.labels),
                "predictions": {m: list(p) for m, p in self.predictions.items()},
                "champion": None if self.champion is None else self.champion.to_xcom()}

    @classmethod
    def from_dict(cls, raw: Any, where: str = "eval/metrics.json") -> Self:
        """Decode any version's metrics.json; RecordError naming ``where`` when it is not one."""
        if not isinstance(raw, dict):
            raise RecordError(f"{where}: expected a JSON object, got {type(raw).__name__}")
        known = {"test_examples", "keras", "variants", "classes", "latency_label", "labels", "predictions",
                 "champion"}
        missing = sorted({"test_examples", "keras", "variants", "classes", "labels", "predictions"} - set(raw))
        unknown = sorted(set(raw) - known)
        if missing or unknown:
            raise RecordError(f"{where}: not an evaluation's metrics: missing {missing}, unknown {unknown}")
        try:
            return cls(
                test_examples=int(raw["test_examples"]), keras=ReferenceFigures.from_xcom(raw["keras"]),
                variants={str(m): EvalVariant.from_xcom(v) for m, v in _mapping(raw["variants"], where).items()},
                classes=tuple(str(c) for c in raw["classes"]), labels=tuple(int(v) for v in raw["labels"]),
                predictions={str(m): tuple(int(v) for v in p)
                             for m, p in _mapping(raw["predictions"], where).items()},
                champion=None if raw.get("champion") is None else ChampionEval.from_xcom(raw["champion"]),
                latency_label=str(raw.get("latency_label", "host")))
        except (TypeError, ValueError) as exc:
            raise RecordError(f"{where}: not an evaluation's metrics: {exc}") from exc


def _mapping(raw: Any, where: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise RecordError(f"{where}: expected an object, got {type(raw).__name__}")
    return raw
