"""Declared hand-offs: what each step or device task returns, and what its consumers read.

Every record is a frozen dataclass. The producer calls ``to_xcom()`` (plain JSON: URIs, sha256, version ids
and small metrics, never bytes); the consumer calls ``Type.from_xcom(value)``, which rebuilds nested records
and rejects missing or unknown keys with one clear error. Adding a field means: the type here, the one
place that fills it, the one place that reads it.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Self

from tasks.core.exceptions import RecordError


class Record:
    """Base of every hand-off record: ``to_xcom`` on the producer side, ``from_xcom`` on the consumer side."""

    def to_xcom(self) -> dict[str, Any]:
        return _encode(self)

    @classmethod
    def from_xcom(cls, raw: Any) -> Self:
        return _decode(cls, raw, cls.__name__)


# --- artifacts ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ArtifactRef(Record):
    """One object in the store, pinned: consumers download exactly this version and check its sha256."""

    uri: str
    sha256: str
    size_bytes: int
    version_id: str | None = None

    @property
    def name(self) -> str:
        return self.uri.rsplit("/", 1)[-1]


# --- run plan -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunPlan(Record):
    """What resolve_config hands every later task: the safe run id, the validated config, targets, modes."""

    run_id: str  # the key form (tasks.core.keys.safe_run_id); a cleared run gets a fresh one
    airflow_run_id: str
    config: dict[str, Any]  # PipelineConfig.to_dict(); consumers parse it with PipelineConfig.from_dict
    modes: tuple[str, ...]


# --- ML steps -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SourceModel(Record):
    """The bring-your-own model (``model.source``) a run imported, as this run fetched and verified it."""

    uri: str
    kind: str  # keras | h5 | saved_model (tasks.core.keys.source_kind)
    sha256: str  # the file's; a SavedModel's is tasks.ml.saved_model.tree_sha256 over its files
    size_bytes: int
    files: int = 1


@dataclass(frozen=True)
class TrainResult(Record):
    model: ArtifactRef  # runs/<id>/model/model.keras, or model/saved_model.tar for a SavedModel source
    keras_test_accuracy: float  # the run's model before conversion (a SavedModel source: its serving signature)
    best_val_accuracy: float
    epochs_run: int
    dataset: dict[str, Any]  # source, classes, counts, fingerprint
    source: SourceModel | None = None  # set when the model was imported (model.source), not trained
    # trained with seeds + TF op determinism (train.deterministic): a rerun on the same machine, data, config and
    # code gives the same model. False for an imported model (nothing was trained) and for records before it.
    deterministic: bool = False

    @property
    def model_format(self) -> str:
        """'saved_model' (a tar of the SavedModel directory) or 'keras' (a .keras file)."""
        return "saved_model" if self.source is not None and self.source.kind == "saved_model" else "keras"

    def summary(self) -> str:
        return (f"trained {self.epochs_run} epoch(s): best val accuracy {self.best_val_accuracy:.4f}, "
                f"Keras test accuracy {self.keras_test_accuracy:.4f}")


@dataclass(frozen=True)
class QuantizeResult(Record):
    mode: str
    tflite: ArtifactRef
    io_dtype: str
    gzip_bytes: int  # pruning shows only in the compressed size
    sparsity: float | None = None  # share of zero weights in the pruned kernels (mode 'pruned')

    def summary(self) -> str:
        sparse = f", sparsity {self.sparsity:.3f}" if self.sparsity is not None else ""
        return (f"{self.mode}: {self.tflite.size_bytes} bytes ({self.gzip_bytes} gzipped), io {self.io_dtype}"
                f"{sparse}")


@dataclass(frozen=True)
class VariantMetrics(Record):
    """One TFLite variant measured on the test split (latency on the build host, labelled so)."""

    accuracy: float
    size_bytes: int
    gzip_bytes: int
    agreement: float | None  # share of test images where it predicts what fp32 predicts
    latency_p50_ms: float
    latency_p90_ms: float
    latency_label: str = "host"
    sample_accuracy: float | None = None  # on the device sample (the first bench.sample_size test images)
    class_recall: tuple[float, ...] | None = None  # recall per class (classes' order); None: not measured
    confusion: tuple[tuple[int, ...], ...] | None = None  # [true class][predicted class] counts on the test split


@dataclass(frozen=True)
class EvaluateResult(Record):
    metrics: ArtifactRef  # runs/<id>/eval/metrics.json (full figures, per-image predictions)
    sample: ArtifactRef  # runs/<id>/eval/sample.npz (shipped to devices for on-device accuracy)
    test_examples: int
    keras_accuracy: float
    variants: dict[str, VariantMetrics]
    tflite: dict[str, ArtifactRef]  # the exact objects evaluated: the gate and deploy use these
    champion_run: str | None = None  # the blessed run whose fp32 was evaluated on this test split (None: first)
    champion_accuracy: float | None = None

    def summary(self) -> str:
        parts = [f"{m} {v.accuracy:.4f}" for m, v in sorted(self.variants.items())]
        champ = f"; champion {self.champion_run} {self.champion_accuracy:.4f}" if self.champion_run else ""
        return f"{self.test_examples} test images: " + ", ".join(parts) + champ


# --- devices ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FileEntry(Record):
    name: str
    sha256: str
    size_bytes: int


@dataclass(frozen=True)
class DeployResult(Record):
    device: str
    arch: str
    release: str
    current_variant: str
    previous: str | None
    modes: tuple[str, ...]
    files: tuple[FileEntry, ...]
    runtime: dict[str, str]
    reused: bool = False  # the identical release was already on the device (a retried or repeated deploy)
    options: dict[str, Any] = field(default_factory=dict)  # RuntimeOptions.to_xcom(): what the device runs it with
    bench_modes: tuple[str, ...] = ()  # what the benchmark measures (empty: every shipped variant)
    connection: str = ""  # the Airflow SSH connection the deploy used; the benchmark uses it too ("" = default id)
    app_failure: str = ""  # "<step>: <why>": activate or health failed, current was switched back to ``previous``

    def summary(self) -> str:
        return (f"{self.device} ({self.arch}): current -> {self.release} [{self.current_variant}], "
                f"was {self.previous or 'nothing'}")


@dataclass(frozen=True)
class DelegateRun(Record):
    """The LiteRT delegate a model ran with on the device (bench.py's per-model ``delegate``)."""

    name: str  # "xnnpack" (LiteRT's built-in default) or the external library's file name
    builtin: bool
    path: str | None = None  # the external library on the device
    options: dict[str, str] = field(default_factory=dict)  # passed to load_delegate(path, options)
    model_nodes: int | None = None  # the model's nodes before any delegate (None: the runtime does not say)
    partitions: int | None = None  # delegate kernels it put in the graph; 0 = it took no op (the CPU ran all)
    fallback_partitions: int | None = None  # external only: XNNPACK kernels for the ops it left

    def summary(self) -> str:
        took = "" if self.partitions is None else f", {self.partitions} partition(s)"
        return f"{self.name}{took}"


@dataclass(frozen=True)
class ModelBench(Record):
    """One model measured on one device by bench.py (field names match bench.py's per-model JSON)."""

    latency_ms: dict[str, float]  # p50 p90 p95 p99 mean std
    accuracy: float
    load_ms: float
    peak_rss_mb: float
    samples: int
    input_dtype: str
    size_bytes: int
    threads: int | None = None  # interpreter threads (None: a record from before bench.py recorded them)
    delegate: DelegateRun | None = None  # None: a record from before bench.py recorded it (LiteRT's default)

    @classmethod
    def from_bench(cls, raw: Mapping[str, Any]) -> ModelBench:
        """Keep the declared fields of bench.py's richer per-model result."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls.from_xcom({k: v for k, v in raw.items() if k in names})


@dataclass(frozen=True)
class BenchmarkResult(Record):
    device: str
    arch: str
    release: str
    current_variant: str
    label: str  # native (a real Pi) | emulated (qemu) | host (x86 stand-in): only native is a Pi figure
    record: ArtifactRef  # runs/<id>/devices/<device>.json: bench.py's whole document
    models: dict[str, ModelBench]
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def current(self) -> ModelBench:
        return self.models[self.current_variant]

    def summary(self) -> str:
        cur = self.current
        ran = f" ({cur.delegate.summary()}, {cur.threads} thread(s))" if cur.delegate else ""
        return (f"{self.device} [{self.label}] {self.current_variant}{ran}: p50 {cur.latency_ms['p50']:.3f} ms, "
                f"accuracy {cur.accuracy:.4f}, peak RSS {cur.peak_rss_mb:.1f} MB")


@dataclass(frozen=True)
class PublishResult(Record):
    manifest: ArtifactRef
    report: ArtifactRef
    artifacts: int
    blessed: bool


# --- event-driven scheduling ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class NewDataEvent(Record):
    """What the dataset watcher (the Airflow plugin's triggers.py) puts in the asset event: one burst of
    uploads, reported once the bucket has been quiet for ``quiet_seconds`` (or ``max_wait_seconds`` passed)."""

    bucket: str
    prefix: str
    objects: int  # distinct keys created or overwritten in the burst
    keys: tuple[str, ...]  # the first few keys, for the log and the UI; not the whole burst
    first_seen: str  # ISO 8601 UTC, when the watcher saw the first and the last notification
    last_seen: str
    quiet_seconds: float


# --- encoding -----------------------------------------------------------------------------------------------
def _encode(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _encode(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_encode(v) for v in value]
    if isinstance(value, enum.Enum):  # plain JSON on the wire (a StrEnum field decodes from its value)
        return value.value
    return value


def _decode(tp: Any, raw: Any, where: str) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if isinstance(tp, type) and issubclass(tp, Record):
        return _decode_record(tp, raw, where)
    if origin in (types.UnionType, typing.Union):
        if raw is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _decode(inner[0], raw, where) if len(inner) == 1 else raw
    if origin is tuple:
        if isinstance(raw, str | bytes | Mapping) or not hasattr(raw, "__iter__"):
            raise RecordError(f"{where}: expected a list, got {type(raw).__name__}")
        return tuple(_decode(args[0], v, f"{where}[]") for v in raw)
    if origin is dict:
        if not isinstance(raw, Mapping):
            raise RecordError(f"{where}: expected an object, got {type(raw).__name__}")
        return {str(k): _decode(args[1], v, f"{where}.{k}") for k, v in raw.items()}
    return raw


def _decode_record(cls: type[Record], raw: Any, where: str) -> Any:
    if not isinstance(raw, Mapping):
        raise RecordError(f"{where}: expected a {cls.__name__} object, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(raw) - set(fields))
    missing = sorted(n for n, f in fields.items() if n not in raw and f.default is dataclasses.MISSING
                     and f.default_factory is dataclasses.MISSING)
    if unknown or missing:
        raise RecordError(f"{where}: not a {cls.__name__}: missing {missing}, unknown {unknown}")
    return cls(**{k: _decode(hints[k], v, f"{where}.{k}") for k, v in raw.items()})
