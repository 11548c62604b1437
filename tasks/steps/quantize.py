"""Quantize step: one TFLite variant per call, built as the mode table (tasks/core/modes.py) says."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tasks.core import keys, modes
from tasks.core.results import QuantizeResult, TrainResult
from tasks.core.step import StepContext, timed
from tasks.ml import data
from tasks.ml.convert import convert, export_saved_model, gzip_size

log = logging.getLogger(__name__)


def saved_model_dir(trained: TrainResult, model_path: Path, tmp: Path) -> Path:
    """The converter's input: the run's SavedModel (a SavedModel source, unpacked) or one exported from Keras."""
    if trained.model_format == "saved_model":
        from tasks.ml import saved_model

        return saved_model.unpack(model_path, tmp / "saved_model")
    return export_saved_model(model_path, tmp)


def run(ctx: StepContext) -> QuantizeResult:
    """Inputs: ``{"mode": <mode>, "train": TrainResult}``; returns a QuantizeResult.

    One mode per process: the tfmot modes switch this process to tf-keras (see tasks/ml/tfmot_variants.py).
    """
    mode = modes.get(ctx.need("mode"))
    trained = TrainResult.from_xcom(ctx.need("train"))
    qcfg = ctx.config.quantize
    settings = mode.settings(qcfg.int8_io_dtype)
    splits, representative = None, None
    if mode.tfmot or mode.needs_calibration:
        splits = data.load_splits(ctx.config.data, ctx.store, ctx.config.max_image_pixels)
        images = list(data.calibration_images(splits, qcfg.calibration_samples))  # TRAIN split only
        log.info("calibration: %d train images", len(images))

        def representative() -> Iterator[list[Any]]:
            for image in images:
                yield [image]

    facts: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        model_path = ctx.store.fetch(trained.model, Path(tmp) / trained.model.name)
        with timed(f"build {mode.name}"):
            if mode.tfmot:  # PipelineConfig refuses tfmot modes for imported models: model_path is a .keras
                from tasks.ml import tfmot_variants

                blob, facts = tfmot_variants.build_variant(ctx.config, mode.name, model_path, splits, Path(tmp),
                                                           representative)
            else:
                blob = convert(saved_model_dir(trained, model_path, Path(tmp)), settings, representative)
        out = Path(tmp) / f"{mode.name}.tflite"
        out.write_bytes(blob)
        art = ctx.store.put_file(keys.tflite(ctx.run_id, mode.name), out)
    result = QuantizeResult(mode=mode.name, tflite=ctx.store.ref(art), io_dtype=settings.io_dtype,
                            gzip_bytes=gzip_size(blob), sparsity=facts.get("sparsity"))
    log.info("%s sha256=%s %s", result.summary(), art.sha256[:12], facts)
    return result
