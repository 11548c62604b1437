"""Pipeline configuration: frozen dataclasses validated on construction.

Layering is defaults < profile file (``tasks/profiles/<name>.json``) < overrides (the DAG's Params).
The resolved object is serialised into the manifest, so any run can be reproduced from it.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, ClassVar

from tasks.core import memory, modes
from tasks.core.exceptions import ConfigError
from tasks.core.keys import S3_SCHEME, parse_s3_uri, source_kind, unsafe_key_reason
from tasks.core.modes import INT8_IO_DTYPES, PTQ_MODES, QUANT_MODES, TFMOT_MODES
from tasks.core.names import DEFAULT_PROFILE
from tasks.core.train_config import TrainConfig
from tasks.core.typed_json import build_dataclass, deep_merge

# auto: a compact CNN ('cnn') for few images per class, else mobilenetv2 (rule in tasks/ml/models.py resolve_backbone)
BACKBONES = ("auto", "cnn", "efficientnetb0", "mobilenetv2", "tiny")
MOBILENET_ALPHAS = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)
# a flat tf-keras rebuild exists for these (tasks/ml/tfmot_variants.py build_flat)
TFMOT_BACKBONES = ("auto", "cnn", "mobilenetv2", "tiny")
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")  # S3's bucket naming rules


def _require(cond: bool, message: str) -> None:
    if not cond:
        raise ConfigError(message)


@dataclass(frozen=True)
class DataConfig:
    """Where images come from and how they are split and batched."""

    source: str = "tfds:cats_vs_dogs"
    image_size: int = 224
    channels: int = 3
    split: tuple[float, float, float] = (0.7, 0.2, 0.1)
    seed: int = 42
    batch_size: int = 32
    max_examples: int = 0  # 0 = use everything

    def __post_init__(self) -> None:
        _require(
            self.source.startswith(("tfds:", S3_SCHEME)) and len(self.source.split(":", 1)[1].strip("/")) > 0,
            f"data.source={self.source!r}: use 'tfds:<name>' or 's3://<bucket>/<prefix>'",
        )
        _check_image_folder(self.source)
        _require(16 <= self.image_size <= 1024, f"data.image_size={self.image_size}: must be 16..1024")
        _require(self.channels in (1, 3), f"data.channels={self.channels}: must be 1 or 3")
        _require(
            len(self.split) == 3 and all(p > 0 for p in self.split) and abs(sum(self.split) - 1) < 1e-6,
            f"data.split={self.split}: three positive fractions (train, val, test) summing to 1",
        )
        _require(0 <= self.seed < 2**32, f"data.seed={self.seed}: must be 0..2**32-1")
        _require(1 <= self.batch_size <= 1024, f"data.batch_size={self.batch_size}: must be 1..1024")
        _require(self.max_examples >= 0, "data.max_examples: must be >= 0 (0 = all)")


def _check_image_folder(source: str) -> None:
    """An ``s3://`` folder's bucket and prefix: its keys become paths under the local cache, so no odd segment."""
    if not source.startswith(S3_SCHEME):
        return
    bucket, prefix = parse_s3_uri(source)
    reason = unsafe_key_reason(prefix.rstrip("/")) if prefix.rstrip("/") else None
    _require(_BUCKET.fullmatch(bucket) is not None and reason is None,
             f"data.source={source!r}: " + (f"the prefix {reason}" if reason else f"bucket {bucket!r} is not an "
                                            "S3 bucket name") + "; name the folder as s3://<bucket>/<prefix>, e.g. "
             "s3://datasets/digits")


@dataclass(frozen=True)
class ModelConfig:
    """Backbone + the seed's head (Dense512-BN-Dense64-Dropout)."""

    backbone: str = "efficientnetb0"
    weights: str = "imagenet"  # imagenet | none | s3://bucket/key.keras
    head_units: tuple[int, int] = (512, 64)
    dropout: float = 0.3
    train_backbone: bool = False
    alpha: float = 1.0  # mobilenetv2 width multiplier
    bn_momentum: float = 0.9  # every BatchNormalization; Keras' 0.999 leaves from-scratch statistics unconverged
    source: str = ""  # bring your own model: s3://…/model.keras|.h5 (raw [0,255] pixels in, probabilities out)

    def __post_init__(self) -> None:
        _require(self.backbone in BACKBONES, f"model.backbone={self.backbone!r}: choose one of {BACKBONES}")
        _require(
            self.weights in ("imagenet", "none") or self.weights.startswith(S3_SCHEME),
            f"model.weights={self.weights!r}: use 'imagenet', 'none' or an s3:// URI of a .keras file",
        )
        _require(
            not (self.backbone in ("tiny", "cnn") and self.weights == "imagenet"),
            f"model.weights='imagenet' needs a pretrained backbone; {self.backbone!r} has no pretrained weights "
            "(backbone 'auto' with imagenet weights picks mobilenetv2)",
        )
        _require(len(self.head_units) == 2 and min(self.head_units) > 0, "model.head_units: two positive ints")
        _require(0 < self.alpha <= 2.0, f"model.alpha={self.alpha}: must be in (0, 2]")
        _require(self.alpha == 1.0 or self.backbone in ("mobilenetv2", "auto"),
                 f"model.alpha={self.alpha}: the width multiplier applies to mobilenetv2 only, "
                 f"not {self.backbone!r}; remove it or set model.backbone='mobilenetv2'")
        _require(not (self.weights == "imagenet" and self.alpha not in MOBILENET_ALPHAS),
                 f"model.alpha={self.alpha}: ImageNet weights exist only for alpha in {MOBILENET_ALPHAS}; "
                 "pick one of those or use model.weights='none'")
        _require(0.0 < self.bn_momentum < 1.0, f"model.bn_momentum={self.bn_momentum}: must be in (0, 1)")
        _require(not self.source or source_kind(self.source) is not None,
                 f"model.source={self.source!r}: use an s3:// URI of a .keras or .h5 file, or of a SavedModel "
                 "directory ending in '/' (s3://bucket/prefix/ holding saved_model.pb and variables/)")
        _require(not (self.source and self.weights.startswith(S3_SCHEME)),
                 "model.source imports a finished model; model.weights (a warm start for training) cannot be an "
                 "s3:// URI at the same time")
        _require(0.0 <= self.dropout < 1.0, f"model.dropout={self.dropout}: must be in [0, 1)")


@dataclass(frozen=True)
class QuantizeConfig:
    modes: tuple[str, ...] = PTQ_MODES
    int8_io_dtype: str = "int8"  # int8 | uint8 (integer input/output of the full-int8 and qat_int8 models)
    calibration_samples: int = 200
    prune_sparsity: float = 0.75  # final sparsity of the polynomial-decay pruning schedule (mode 'pruned')
    # kernels smaller than this are not pruned: the first conv and thin projections carry much accuracy per weight
    # and little size (pruning every kernel of MobileNetV2-0.35 to 75 % collapsed it to chance)
    prune_min_weights: int = 16384
    finetune_epochs: int = 2  # tfmot fine-tuning of 'pruned' and 'qat_int8'
    finetune_learning_rate: float = 1e-4
    int8_rescue: bool = False  # post-training int8 fails the gate -> ship qat_int8 in its place if it passes

    @property
    def needs_calibration(self) -> bool:
        """Full-integer modes draw calibration images from the train split."""
        return modes.needs_calibration(self.modes)

    def __post_init__(self) -> None:
        bad = [m for m in self.modes if m not in QUANT_MODES]
        _require(not bad, f"quantize.modes: unknown mode(s) {bad}; choose from {QUANT_MODES}")
        _require("fp32" in self.modes, "quantize.modes must include 'fp32': it is the accuracy baseline")
        _require(len(set(self.modes)) == len(self.modes), f"quantize.modes={self.modes}: duplicates")
        _require(self.int8_io_dtype in INT8_IO_DTYPES, f"quantize.int8_io_dtype: one of {INT8_IO_DTYPES}")
        _require(self.calibration_samples >= 1, "quantize.calibration_samples: must be >= 1")
        _require(0 < self.prune_sparsity < 1, f"quantize.prune_sparsity={self.prune_sparsity}: must be in (0, 1)")
        _require(self.prune_min_weights >= 0, "quantize.prune_min_weights: must be >= 0")
        _require(1 <= self.finetune_epochs <= 100, f"quantize.finetune_epochs={self.finetune_epochs}: must be 1..100")
        _require(0 < self.finetune_learning_rate < 1, "quantize.finetune_learning_rate: must be in (0, 1)")
        _require(not self.int8_rescue or {"int8", "qat_int8"} <= set(self.modes),
                 "quantize.int8_rescue needs both 'int8' and 'qat_int8' in quantize.modes (qat_int8 is the rescue)")


@dataclass(frozen=True)
class EvalConfig:
    batch_size: int = 64
    latency_warmup: int = 10
    latency_runs: int = 50

    def __post_init__(self) -> None:
        _require(self.batch_size >= 1, "evaluate.batch_size: must be >= 1")
        _require(self.latency_runs >= 50, "evaluate.latency_runs: must be >= 50 for stable percentiles")


@dataclass(frozen=True)
class GateConfig:
    """What the test data must prove before a run ships (tasks/steps/gate.py); margins in percentage points."""

    max_accuracy_drop_pp: float = 1.0  # non-inferiority margin of every variant vs fp32 on the same images
    deploy_variants: tuple[str, ...] = ()  # empty = every variant that passes
    min_accuracy: float = 0.0  # absolute floor on test accuracy for fp32 and every variant (and the canary)
    significance: float = 0.05  # the bounds are one-sided at 1 - significance
    compare_champion: bool = True  # evaluate the currently blessed model on this test split
    champion_margin_pp: float = 1.0  # non-inferiority margin of the challenger's fp32 vs the champion's
    min_test_per_class: int = 20  # fewer test images of any class: not blessed (too little evidence)
    max_class_drop_pp: float = 15.0  # non-inferiority margin of each class's recall vs fp32

    def __post_init__(self) -> None:
        for name in ("max_accuracy_drop_pp", "champion_margin_pp", "max_class_drop_pp"):
            _require(0 <= getattr(self, name) <= 100, f"gate.{name}={getattr(self, name)}: must be 0..100")
        _require(0 <= self.min_accuracy <= 1, f"gate.min_accuracy={self.min_accuracy}: a fraction in [0, 1]")
        _require(0 < self.significance < 0.5, f"gate.significance={self.significance}: must be in (0, 0.5)")
        _require(1 <= self.min_test_per_class <= 100_000, "gate.min_test_per_class: must be 1..100000")
        bad = [m for m in self.deploy_variants if m not in QUANT_MODES]
        _require(not bad, f"gate.deploy_variants: unknown mode(s) {bad}; choose from {QUANT_MODES}")


@dataclass(frozen=True)
class BenchConfig:
    """On-device benchmark. Bounded so a typo cannot run a Pi out of memory or time after a deploy."""

    warmup: int = 10
    runs: int = 100
    threads: int = 4
    sample_size: int = 64
    timeout_s: int = 1800  # the whole bench.py run on the device

    MAX_RUNS: ClassVar[int] = 100_000
    TASK_TIMEOUT_S: ClassVar[int] = 2400  # the benchmark task's execution_timeout in the DAG

    def __post_init__(self) -> None:
        _require(100 <= self.runs <= self.MAX_RUNS,
                 f"bench.runs={self.runs}: must be >= 100 (stable p99) and <= {self.MAX_RUNS}")
        _require(0 <= self.warmup <= 10_000, f"bench.warmup={self.warmup}: must be 0..10000")
        _require(1 <= self.threads <= 64, "bench.threads: must be 1..64")
        _require(1 <= self.sample_size <= 10000, "bench.sample_size: must be 1..10000")
        limit = self.TASK_TIMEOUT_S - 120  # connecting and storing the record fit in the rest
        _require(60 <= self.timeout_s <= limit, f"bench.timeout_s={self.timeout_s}: must be 60..{limit} (the "
                 f"benchmark task times out after {self.TASK_TIMEOUT_S}s)")


@dataclass(frozen=True)
class DeployConfig:
    """How a release reaches a device (see the Airflow plugin's device_release.py for the protocol).

    ``TASK_TIMEOUT_S`` is the deploy task's execution_timeout in the DAG: the worst case of every device-side
    wait below must fit inside it, so a slow provisioning fails with its own message, not a task kill.
    """

    keep_releases: int = 5  # releases kept on the device; current and previous are never deleted
    lock_timeout_s: int = 240  # waiting for another deploy to the same device root
    provision_timeout_s: int = 600  # creating the device venv and pip-installing the pinned runtime
    command_timeout_s: int = 60  # any other device command (checksums, rename, switch, prune)
    smoke_timeout_s: int = 120  # load + one invoke per variant, in staging and again through `current`
    upload_timeout_s: int = 240  # SFTP inactivity timeout while uploading

    TASK_TIMEOUT_S: ClassVar[int] = 1800

    def __post_init__(self) -> None:
        _require(2 <= self.keep_releases <= 100,
                 f"deploy.keep_releases={self.keep_releases}: must be 2..100 (current and previous are kept)")
        for name in ("lock_timeout_s", "provision_timeout_s", "command_timeout_s", "smoke_timeout_s",
                     "upload_timeout_s"):
            value = getattr(self, name)
            _require(10 <= value <= self.TASK_TIMEOUT_S, f"deploy.{name}={value}: must be 10..{self.TASK_TIMEOUT_S}")
        worst = self.worst_case_s()
        _require(worst < self.TASK_TIMEOUT_S,
                 f"deploy timeouts add up to {worst}s, more than the deploy task's {self.TASK_TIMEOUT_S}s: "
                 "lower deploy.provision_timeout_s or deploy.lock_timeout_s")

    def worst_case_s(self) -> int:
        """Lock wait + provisioning + upload + two smoke runs (staging, current) + a few commands."""
        return (self.lock_timeout_s + self.provision_timeout_s + self.upload_timeout_s
                + 2 * self.smoke_timeout_s + 4 * self.command_timeout_s)


RUNNERS = ("local", "docker", "kubernetes")


@dataclass(frozen=True)
class ExecutionConfig:
    """Where the ML steps run. Step code is identical for every runner."""

    runner: str = "local"  # local | docker | kubernetes
    image: str = ""  # empty = edgeops/tasks:<content hash of this checkout's step code>
    memory_limit: str = "8g"
    cpus: float = 2.0
    k8s_namespace: str = "edgeops"
    k8s_secret: str = "edgeops-minio"

    def __post_init__(self) -> None:
        _require(self.runner in RUNNERS, f"execution.runner={self.runner!r}: choose one of {RUNNERS}")
        _require(re.fullmatch(r"\d+[kmg]?", self.memory_limit.lower()) is not None,
                 f"execution.memory_limit={self.memory_limit!r}: use a size like '8g' or '512m'")
        _require(0 < self.cpus <= 64, "execution.cpus: must be in (0, 64]")


@dataclass(frozen=True)
class PipelineConfig:
    profile: str = DEFAULT_PROFILE
    # may a blessed run of this profile reach devices? false (test profiles): announce never fires, a rollout
    # refuses the run, and it is never anyone's champion
    ships: bool = True
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    quantize: QuantizeConfig = field(default_factory=QuantizeConfig)
    evaluate: EvalConfig = field(default_factory=EvalConfig)
    gate: GateConfig = field(default_factory=GateConfig)
    bench: BenchConfig = field(default_factory=BenchConfig)
    deploy: DeployConfig = field(default_factory=DeployConfig)
    execution: ExecutionConfig = field(default_factory=ExecutionConfig)

    def __post_init__(self) -> None:
        missing = [m for m in self.gate.deploy_variants if m not in self.quantize.modes]
        _require(not missing, f"gate.deploy_variants {missing} are not in quantize.modes {self.quantize.modes}")
        tfmot = [m for m in self.quantize.modes if m in TFMOT_MODES]
        _require(not (tfmot and source_kind(self.model.source) == "saved_model"),
                 f"quantize.modes {tfmot}{' and quantize.int8_rescue' if self.quantize.int8_rescue else ''}: "
                 "pruned/qat_int8 fine-tune Keras layers; a SavedModel source has no Keras layers to prune or "
                 f"quantize-train: drop {tfmot} from quantize.modes (and int8_rescue), or use the PTQ modes "
                 f"{PTQ_MODES}")
        _require(not (tfmot and self.model.source),
                 f"quantize.modes {tfmot} rebuild the configured architecture in tf-keras, which an imported "
                 f"model.source does not have: drop {tfmot} from quantize.modes")
        _require(not tfmot or self.model.backbone in TFMOT_BACKBONES,
                 f"quantize.modes {tfmot} need tfmot, which here supports model.backbone in {TFMOT_BACKBONES}, not "
                 f"{self.model.backbone!r} (QAT cannot wrap EfficientNet's squeeze-excite blocks): drop {tfmot} "
                 "from quantize.modes or change the backbone")
        self._check_memory()

    def _check_memory(self) -> None:
        """Sizes whose input tensors alone exceed the step's memory: refused now, naming the knob and the limit."""
        problem = memory.first_over_budget(
            self.execution.memory_limit, self.data.image_size, self.data.channels,
            {"data.batch_size": self.data.batch_size, "evaluate.batch_size": self.evaluate.batch_size,
             "quantize.calibration_samples": self.quantize.calibration_samples})
        _require(problem is None, problem or "")

    @property
    def max_image_pixels(self) -> int:
        """The largest image (width x height) a folder may hold (tasks.core.memory.max_image_pixels)."""
        return memory.max_image_pixels(self.execution.memory_limit, self.data.channels)

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> PipelineConfig:
        return build_dataclass(cls, raw)


def profile_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("tasks.profiles").iterdir() if p.name.endswith(".json"))


def load_profile(name: str) -> dict[str, Any]:
    if name not in profile_names():
        raise ConfigError(f"profile {name!r} not found; available: {profile_names()}")
    return json.loads(resources.files("tasks.profiles").joinpath(f"{name}.json").read_text())


def load_config(profile: str, overrides: dict[str, Any] | None = None) -> PipelineConfig:
    """Resolve defaults < profile < overrides. Overrides are nested dicts or dotted keys."""
    nested: dict[str, Any] = {}
    for key, value in (overrides or {}).items():
        for part in reversed(key.split(".")):  # train.augment.rotation -> {train: {augment: {rotation: v}}}
            value = {part: value}
        nested = deep_merge(nested, value)
    raw = deep_merge({"profile": profile, **load_profile(profile)}, nested)
    return PipelineConfig.from_dict(raw)
