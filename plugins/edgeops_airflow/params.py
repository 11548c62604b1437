"""The DAG's typed Params (the UI trigger form) and how each maps onto the pipeline config.

A Param left empty (None) keeps the profile's value, so a profile stays the single source of defaults.
Resolution happens in the first task, so a malformed Param fails the run before any compute.
"""

from __future__ import annotations

import os
from typing import Any

from airflow.sdk import Param

from tasks.core import names
from tasks.core.config import (
    BACKBONES,
    RUNNERS,
    BenchConfig,
    PipelineConfig,
    load_config,
    profile_names,
)
from tasks.core.keys import run_key
from tasks.core.modes import INT8_IO_DTYPES, MODES, QUANT_MODES
from tasks.core.results import RunPlan
from tasks.ml.model_source import check_source

DEFAULT_PROFILE = os.environ.get(names.ENV_PROFILE, names.DEFAULT_PROFILE)

# Param name -> dotted config key.
PARAM_TO_CONFIG = {
    "data_source": "data.source",
    "image_size": "data.image_size",
    "batch_size": "data.batch_size",
    "max_examples": "data.max_examples",
    "backbone": "model.backbone",
    "alpha": "model.alpha",
    "weights": "model.weights",
    "model_source": "model.source",
    "epochs": "train.epochs",
    "learning_rate": "train.learning_rate",
    "modes": "quantize.modes",
    "int8_io_dtype": "quantize.int8_io_dtype",
    "calibration_samples": "quantize.calibration_samples",
    "prune_sparsity": "quantize.prune_sparsity",
    "finetune_epochs": "quantize.finetune_epochs",
    "int8_rescue": "quantize.int8_rescue",
    "min_accuracy": "gate.min_accuracy",
    "compare_champion": "gate.compare_champion",
    "max_accuracy_drop_pp": "gate.max_accuracy_drop_pp",
    "deploy_variants": "gate.deploy_variants",
    "bench_runs": "bench.runs",
    "task_runner": "execution.runner",
}


def _opt(kind: str, description: str, **schema: Any) -> Param:
    return Param(
        None, type=["null", kind], description=f"{description} Empty = the profile's value.", **schema
    )


def non_shipping_profiles() -> set[str]:
    """Profiles whose blessed runs may not ship (``ships: false``): the form says so next to the choice."""
    return {name for name in profile_names() if not load_config(name).ships}


def dag_params() -> dict[str, Param]:
    mode_items = {"type": "string", "enum": list(QUANT_MODES)}
    return {
        "profile": Param(
            DEFAULT_PROFILE,
            type="string",
            enum=profile_names(),
            description="Config profile: seed (EfficientNetB0, cats_vs_dogs), demo (digits), folder (your own "
                        "image folder: set data_source; flips, rotation and colour augmentation on), tiny (tests). "
                        "Profiles that never roll out (blessed runs stay off devices): "
                        f"{sorted(non_shipping_profiles())}.",
        ),
        "data_source": _opt(
            "string",
            "tfds:<name> or s3://<bucket>/<prefix> (folders per class).",
            pattern=r"^(tfds:.+|s3://.+)$",
        ),
        "image_size": _opt("integer", "Square input size in pixels.", minimum=16, maximum=1024),
        "batch_size": _opt("integer", "Training batch size.", minimum=1, maximum=1024),
        "max_examples": _opt("integer", "Cap on images used (0 = all).", minimum=0),
        "backbone": _opt("string", "Feature extractor.", enum=[None, *BACKBONES]),
        "weights": _opt(
            "string",
            "imagenet | none | s3://... .keras to warm-start.",
            pattern=r"^(imagenet|none|s3://.+\.keras)$",
        ),
        "alpha": _opt("number", "MobileNetV2 width multiplier (mobilenetv2 only).", exclusiveMinimum=0, maximum=2),
        "model_source": _opt("string", "Bring your own model: s3://... .keras or .h5, or a SavedModel directory "
                             "s3://.../ (saved_model.pb + variables/); training is skipped.",
                             pattern=r"^s3://.+(\.keras|\.h5|/)$"),
        "epochs": _opt("integer", "Training epochs (full passes).", minimum=1, maximum=1000),
        "learning_rate": _opt("number", "Adam learning rate.", exclusiveMinimum=0, exclusiveMaximum=1),
        "modes": _opt("array", "TFLite variants to build (fp32 is required): "
                      + "; ".join(f"{m.name}: {m.summary}" for m in MODES.values()) + ".", items=mode_items,
                      minItems=1),
        "int8_io_dtype": _opt(
            "string", "Integer input/output type of the int8 and qat_int8 models.", enum=[None, *INT8_IO_DTYPES]
        ),
        "calibration_samples": _opt("integer", "Train images used to calibrate int8.", minimum=1),
        "prune_sparsity": _opt("number", "Final sparsity of the 'pruned' variant.", exclusiveMinimum=0,
                               exclusiveMaximum=1),
        "finetune_epochs": _opt("integer", "tfmot fine-tuning epochs (pruned, qat_int8).", minimum=1, maximum=100),
        "int8_rescue": _opt("boolean", "Ship qat_int8 in place of int8 when post-training int8 fails the gate."),
        "min_accuracy": _opt("number", "Gate: absolute floor on test accuracy (fraction).", minimum=0, maximum=1),
        "compare_champion": _opt("boolean", "Gate: compare with the model currently blessed for this data."),
        "max_accuracy_drop_pp": _opt(
            "number", "Gate: max accuracy drop vs fp32, in points.", minimum=0, maximum=100
        ),
        "deploy_variants": _opt("array", "Variants to ship (empty = all that pass).", items=mode_items),
        "task_runner": _opt("string", "Where ML steps run: local subprocess, docker (step image) or kubernetes.",
                            enum=[None, *RUNNERS]),
        "bench_runs": _opt("integer", "Timed invokes per model on each device.", minimum=100,
                           maximum=BenchConfig.MAX_RUNS),
    }


def check_model_source(config: PipelineConfig) -> None:
    """A bring-your-own model whose input or classes do not fit the data fails here, before any compute (read
    through the ``edgeops_minio`` connection, without TensorFlow: tasks/ml/model_source.py)."""
    if not config.model.source:
        return
    from edgeops_airflow.store import artifact_store

    check_source(config, artifact_store(names.MINIO_CONN_ID, names.ARTIFACTS_BUCKET))


def resolve(params: dict[str, Any], airflow_run_id: str, clear_number: int = 0) -> RunPlan:
    """Params -> validated config and safe run id; every bad value raises ConfigError here, before compute."""
    overrides = {PARAM_TO_CONFIG[k]: v for k, v in params.items() if k in PARAM_TO_CONFIG and v is not None}
    config = load_config(params.get("profile") or DEFAULT_PROFILE, overrides)
    run_id = run_key(airflow_run_id, clear_number)
    check_model_source(config)
    return RunPlan(run_id=run_id, airflow_run_id=airflow_run_id, config=config.to_dict(),
                   modes=config.quantize.modes)
