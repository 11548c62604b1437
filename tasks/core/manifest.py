"""``runs/<id>/manifest.json``: what a finished run published, as one record.

``RunManifest.to_dict`` is the one writer (tasks.steps.publish, last write of a run); ``RunManifest.from_dict``
the one decoder, used by every reader (runs, champion, warm start, report, rollout, CLI, scripts, benchmarks).
It reads every schema ever written and upgrades it to the current record:

* 3 (now): train, evaluation, variants (figures + the gate's verdict per variant), gate verdict, artifacts.
  Device results live in the rollout records (``rollouts/<id>/record.json``).
* 2: the same plus ``devices`` (the run's own benchmarks, kept in ``devices``) and ``gate.devices`` (dropped).
* 1 (before the gate recorded a verdict): ``keras`` instead of ``train``/``evaluation``, variants with
  ``latency_ms`` and ``passed_gate``, a gate of ``max_accuracy_drop_pp``/``deploy``/``current`` only (what was
  deployed was blessed). It decodes with ``gate`` None, ``train`` None and the old gate in ``legacy_gate``;
  its ``devices`` (an entry shape of their own) are not carried over.

A manifest that is none of these raises one RecordError that names the object.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Self

from tasks.core.exceptions import RecordError
from tasks.core.modes import unsafe_variant_names
from tasks.core.results import ArtifactRef, BenchmarkResult, Record, SourceModel, VariantMetrics
from tasks.core.verdict import GateVerdict, VariantVerdict

SCHEMA = 3  # 3: device results moved to the rollout records


@dataclass(frozen=True)
class ManifestArtifact(Record):
    """One object of the run, with the sha256 recorded when it was uploaded (``edgeops runs verify`` checks)."""

    name: str  # relative to runs/<id>/, e.g. tflite/fp32.tflite
    key: str
    sha256: str
    size_bytes: int


@dataclass(frozen=True)
class TrainSummary(Record):
    """The TrainResult without its dataset (that is the manifest's own ``dataset``)."""

    model: ArtifactRef
    keras_test_accuracy: float
    best_val_accuracy: float
    epochs_run: int
    source: SourceModel | None = None  # set when the model was imported (model.source)


@dataclass(frozen=True)
class EvaluationSummary(Record):
    test_examples: int | None  # None: schema 1 did not record it
    keras_accuracy: float
    metrics: ArtifactRef | None = None  # eval/metrics.json; None: schema 1


@dataclass(frozen=True)
class ManifestVariant(Record):
    """A variant's figures (VariantMetrics' fields) plus the gate's verdict on it."""

    accuracy: float
    size_bytes: int
    gzip_bytes: int | None  # None: schema 1 did not measure it
    agreement: float | None
    latency_p50_ms: float | None  # host latency (None: a figure the renderer shows as a dash)
    latency_p90_ms: float | None
    latency_label: str = "host"
    sample_accuracy: float | None = None  # on the device sample; None: written before it was measured
    class_recall: tuple[float, ...] | None = None  # recall per class (classes' order); None: not measured
    confusion: tuple[tuple[int, ...], ...] | None = None  # [true class][predicted class] counts on the test split
    gate: VariantVerdict | None = None  # None: the gate did not judge it

    @classmethod
    def of(cls, metrics: VariantMetrics, verdict: VariantVerdict | None) -> ManifestVariant:
        return cls(**{f.name: getattr(metrics, f.name) for f in fields(VariantMetrics)}, gate=verdict)


@dataclass(frozen=True)
class LegacyGate(Record):
    """Schema 1's gate: only what was deployed (deployed meant blessed)."""

    deploy: tuple[str, ...] = ()
    current: str | None = None
    max_accuracy_drop_pp: float | None = None


@dataclass(frozen=True)
class RunManifest:
    run_id: str
    code_version: str
    created_at: str  # ISO 8601 UTC
    config: dict[str, Any]  # the run's PipelineConfig.to_dict(), in its own code version's shape
    dataset: dict[str, Any]  # TrainResult.dataset: source, classes, counts, fingerprint
    evaluation: EvaluationSummary
    variants: dict[str, ManifestVariant]
    gate: GateVerdict | None  # None: schema 1 (see legacy_gate)
    train: TrainSummary | None = None  # None: schema 1
    artifacts: tuple[ManifestArtifact, ...] = ()  # publish fills it last, just before writing
    report_key: str | None = None
    devices: tuple[BenchmarkResult, ...] = ()  # schema 2 only: the run's own device benchmarks
    legacy_gate: LegacyGate | None = None  # schema 1 only
    schema: int = SCHEMA  # the schema it was written with (to_dict always writes the current one)

    def __post_init__(self) -> None:
        bad = unsafe_variant_names(self.variants)
        if bad:
            raise RecordError(f"run {self.run_id!r}: unsafe variant name(s) {', '.join(bad)}: a variant is one word "
                              "of letters, digits and '_' (it becomes a file name)")

    # --- what the readers ask --------------------------------------------------------------------------------
    @property
    def blessed(self) -> bool:
        if self.gate is not None:
            return self.gate.blessed
        return bool(self.legacy_gate and self.legacy_gate.deploy)

    @property
    def deploy(self) -> tuple[str, ...]:
        return self.gate.deploy if self.gate else self.legacy_gate.deploy if self.legacy_gate else ()

    @property
    def current(self) -> str | None:
        return self.gate.current if self.gate else self.legacy_gate.current if self.legacy_gate else None

    @property
    def verdict(self) -> GateVerdict:
        """The gate's verdict; a schema-1 run has none and cannot be rolled out."""
        if self.gate is None:
            raise RecordError(f"run {self.run_id}: its manifest (schema {self.schema}) has no gate verdict; "
                              "re-run the pipeline to publish one")
        return self.gate

    @property
    def source(self) -> str | None:
        """The dataset source the run trained on."""
        value = self.dataset.get("source")
        return None if value is None else str(value)

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(str(c) for c in self.dataset.get("classes", ()))

    @property
    def profile(self) -> str | None:
        value = self.config.get("profile")
        return None if value is None else str(value)

    @property
    def ships(self) -> bool:
        """Whether the run's profile may reach devices (``ships`` in its resolved config; runs from before the
        field existed: every profile but ``tiny``, the test profile)."""
        value = self.config.get("ships")
        return bool(value) if value is not None else self.profile != "tiny"

    @property
    def input_shape(self) -> tuple[int, int] | None:
        """(image_size, channels) the run's model takes; None when its config does not say."""
        data = self.config.get("data")
        if not isinstance(data, dict) or "image_size" not in data:
            return None
        return int(data["image_size"]), int(data.get("channels", 3))

    def artifact(self, name: str) -> ManifestArtifact | None:
        return next((a for a in self.artifacts if a.name == name), None)

    def with_artifacts(self, artifacts: tuple[ManifestArtifact, ...], report_key: str) -> RunManifest:
        from dataclasses import replace

        return replace(self, artifacts=artifacts, report_key=report_key)

    # --- the one writer and the one decoder --------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "schema": SCHEMA, "run_id": self.run_id, "code_version": self.code_version,
            "created_at": self.created_at, "config": self.config, "dataset": self.dataset,
            "train": None if self.train is None else self.train.to_xcom(),
            "evaluation": self.evaluation.to_xcom(),
            "variants": {m: v.to_xcom() for m, v in self.variants.items()},
            "gate": None if self.gate is None else self.gate.to_xcom(),
            "artifacts": [a.to_xcom() for a in self.artifacts],
        }
        if self.report_key is not None:
            out["report_key"] = self.report_key
        if self.devices:
            out["devices"] = [d.to_xcom() for d in self.devices]
        if self.legacy_gate is not None:
            out["legacy_gate"] = self.legacy_gate.to_xcom()
        return out

    @classmethod
    def from_dict(cls, raw: Any, where: str = "manifest.json") -> Self:
        """Decode a manifest of any schema; one RecordError naming ``where`` when it is not one."""
        if not isinstance(raw, dict):
            raise RecordError(f"{where}: not a run manifest: expected a JSON object, got {type(raw).__name__}")
        schema = raw.get("schema")
        if schema not in (1, 2, 3):
            raise RecordError(f"{where}: not a run manifest: schema {schema!r} (this code reads 1, 2 and 3)")
        try:
            return cls._schema_1(raw) if schema == 1 else cls._schema_2_3(raw, schema)
        except RecordError as exc:
            raise RecordError(f"{where}: not a schema-{schema} run manifest: {exc}") from exc
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise RecordError(f"{where}: not a schema-{schema} run manifest: {type(exc).__name__} {exc}") from exc

    @classmethod
    def _schema_2_3(cls, raw: dict[str, Any], schema: int) -> Self:
        allowed = {"schema", "run_id", "code_version", "created_at", "config", "dataset", "train", "evaluation",
                   "variants", "gate", "artifacts", "report_key", "devices", "legacy_gate"}
        _keys(raw, allowed, {"run_id", "code_version", "created_at", "config", "dataset", "evaluation",
                             "variants", "gate"})
        gate = raw["gate"]
        if schema == 2 and isinstance(gate, dict):
            gate = {k: v for k, v in gate.items() if k != "devices"}  # schema 2's deploy targets: gone
        return cls(
            schema=schema, run_id=str(raw["run_id"]), code_version=str(raw["code_version"]),
            created_at=str(raw["created_at"]), config=_obj(raw["config"], "config"),
            dataset=_obj(raw["dataset"], "dataset"),
            train=None if raw.get("train") is None else TrainSummary.from_xcom(raw["train"]),
            evaluation=EvaluationSummary.from_xcom(raw["evaluation"]),
            variants={str(m): ManifestVariant.from_xcom(v) for m, v in _obj(raw["variants"], "variants").items()},
            gate=None if gate is None else GateVerdict.from_xcom(gate),
            artifacts=tuple(ManifestArtifact.from_xcom(a) for a in raw.get("artifacts", ())),
            report_key=raw.get("report_key"),
            devices=tuple(BenchmarkResult.from_xcom(d) for d in raw.get("devices", ())),
            legacy_gate=None if raw.get("legacy_gate") is None else LegacyGate.from_xcom(raw["legacy_gate"]))

    @classmethod
    def _schema_1(cls, raw: dict[str, Any]) -> Self:
        _keys(raw, {"schema", "run_id", "code_version", "created_at", "config", "dataset", "keras", "variants",
                    "gate", "devices", "artifacts", "report_key"},
              {"run_id", "code_version", "created_at", "config", "dataset", "keras", "variants", "gate"})
        variants = {}
        for mode, v in _obj(raw["variants"], "variants").items():
            verdict = (None if v.get("passed_gate") is None
                       else VariantVerdict(passed=bool(v["passed_gate"]), drop_pp=float(v.get("drop_pp") or 0.0)))
            variants[str(mode)] = ManifestVariant(
                accuracy=float(v["accuracy"]), size_bytes=int(v["size_bytes"]), gzip_bytes=None,
                agreement=v.get("agreement"), latency_p50_ms=float(v["latency_ms"]["p50"]),
                latency_p90_ms=float(v["latency_ms"]["p90"]), latency_label=str(v.get("latency_label", "host")),
                gate=verdict)
        return cls(
            schema=1, run_id=str(raw["run_id"]), code_version=str(raw["code_version"]),
            created_at=str(raw["created_at"]), config=_obj(raw["config"], "config"),
            dataset=_obj(raw["dataset"], "dataset"),
            evaluation=EvaluationSummary(test_examples=None, keras_accuracy=float(raw["keras"]["accuracy"])),
            variants=variants, gate=None, legacy_gate=LegacyGate.from_xcom(raw["gate"]),
            artifacts=tuple(ManifestArtifact.from_xcom(a) for a in raw.get("artifacts", ())),
            report_key=raw.get("report_key"))


def _keys(raw: dict[str, Any], allowed: set[str], required: set[str]) -> None:
    missing, unknown = sorted(required - set(raw)), sorted(set(raw) - allowed)
    if missing or unknown:
        raise RecordError(f"missing {missing}, unknown {unknown}")


def _obj(raw: Any, name: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise RecordError(f"{name}: expected an object, got {type(raw).__name__}")
    return raw
