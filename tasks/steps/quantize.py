"""Quantize step: one TFLite variant per call. ``converter_settings`` is the single mode -> settings map."""

from __future__ import annotations

import gzip
import logging
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.core import keys
from tasks.core.config import PTQ_MODES, TFMOT_MODES
from tasks.core.results import QuantizeResult, TrainResult
from tasks.core.step import StepContext, timed
from tasks.ml import data

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConverterSettings:
    """TF-free description of a conversion; ``apply`` turns it into TFLiteConverter attributes."""

    mode: str
    optimize: bool = False
    supported_types: tuple[str, ...] = ()  # e.g. ("float16",)
    builtins_int8_only: bool = False  # TFLITE_BUILTINS_INT8: fail instead of falling back to float kernels
    io_dtype: str = "float32"  # model input/output tensor type
    needs_representative_data: bool = False


def converter_settings(mode: str, io_dtype: str | None = None) -> ConverterSettings:
    """Map a quantization mode to converter settings; unknown modes or invalid combinations raise ValueError."""
    if mode in TFMOT_MODES:
        raise ValueError(f"mode {mode!r} is built by tasks.ml.tfmot_variants (fine-tuning), not by a converter setting")
    if mode not in PTQ_MODES:
        raise ValueError(f"unknown quantization mode {mode!r}; choose from {PTQ_MODES}")
    if io_dtype is not None and mode != "int8":
        raise ValueError(f"io_dtype={io_dtype!r} needs full-integer quantization (mode='int8'), not mode={mode!r}")
    if mode == "fp32":
        return ConverterSettings("fp32")
    if mode == "fp16":
        return ConverterSettings("fp16", optimize=True, supported_types=("float16",))
    if mode == "dynamic":
        return ConverterSettings("dynamic", optimize=True)
    io_dtype = io_dtype or "int8"
    if io_dtype not in ("int8", "uint8"):
        raise ValueError(f"int8 io_dtype must be 'int8' or 'uint8', got {io_dtype!r}")
    return ConverterSettings("int8", optimize=True, builtins_int8_only=True, io_dtype=io_dtype,
                             needs_representative_data=True)


def convert(saved_model_dir: str | Path, settings: ConverterSettings,
            representative: Callable[[], Iterator[list[Any]]] | None = None) -> bytes:
    import tensorflow as tf

    if settings.needs_representative_data and representative is None:
        raise ValueError(f"mode {settings.mode!r} needs representative data for calibration")
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir))
    if settings.optimize:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if settings.supported_types:
        converter.target_spec.supported_types = [getattr(tf, t) for t in settings.supported_types]
    if settings.builtins_int8_only:
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if settings.io_dtype != "float32":
        converter.inference_input_type = getattr(tf, settings.io_dtype)
        converter.inference_output_type = getattr(tf, settings.io_dtype)
    if settings.needs_representative_data:
        converter.representative_dataset = representative
    return converter.convert()


def export_saved_model(keras_path: str | Path, out_dir: str | Path) -> Path:
    """Keras 3 -> SavedModel; the Keras-3-safe way into TFLiteConverter (keeps a dynamic batch dim)."""
    import keras

    model = keras.models.load_model(keras_path, compile=False)
    out = Path(out_dir) / "saved_model"
    model.export(str(out), verbose=False)
    return out


def saved_model_dir(trained: TrainResult, model_path: Path, tmp: Path) -> Path:
    """The converter's input: the run's SavedModel (a SavedModel source, unpacked) or one exported from Keras."""
    if trained.model_format == "saved_model":
        from tasks.ml import saved_model

        return saved_model.unpack(model_path, tmp / "saved_model")
    return export_saved_model(model_path, tmp)


def gzip_size(blob: bytes) -> int:
    """Compressed size: what a pruned model saves shows only here (zeros still take 4 bytes in the flatbuffer)."""
    return len(gzip.compress(blob, compresslevel=9, mtime=0))


def run(ctx: StepContext) -> QuantizeResult:
    """Inputs: ``{"mode": <mode>, "train": TrainResult}``; returns a QuantizeResult.

    One mode per process: the tfmot modes switch this process to tf-keras (see tasks/ml/tfmot_variants.py).
    """
    mode = ctx.need("mode")
    trained = TrainResult.from_xcom(ctx.need("train"))
    qcfg = ctx.config.quantize
    tfmot = mode in TFMOT_MODES
    settings = None if tfmot else converter_settings(mode, qcfg.int8_io_dtype if mode == "int8" else None)
    splits, representative = None, None
    if tfmot or settings.needs_representative_data:
        splits = data.load_splits(ctx.config.data, ctx.store)
        images = list(data.calibration_images(splits, qcfg.calibration_samples))  # TRAIN split only
        log.info("calibration: %d train images", len(images))

        def representative() -> Iterator[list[Any]]:
            for image in images:
                yield [image]

    facts: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        model_path = ctx.store.fetch(trained.model, Path(tmp) / trained.model.name)
        with timed(f"build {mode}"):
            if tfmot:  # PipelineConfig refuses tfmot modes for imported models: model_path is a .keras
                from tasks.ml import tfmot_variants

                blob, facts = tfmot_variants.build_variant(ctx.config, mode, model_path, splits, Path(tmp),
                                                           representative)
            else:
                blob = convert(saved_model_dir(trained, model_path, Path(tmp)), settings, representative)
        out = Path(tmp) / f"{mode}.tflite"
        out.write_bytes(blob)
        art = ctx.store.put_file(keys.tflite(ctx.run_id, mode), out)
    io_dtype = qcfg.int8_io_dtype if mode == "qat_int8" else ("float32" if tfmot else settings.io_dtype)
    result = QuantizeResult(mode=mode, tflite=ctx.store.ref(art), io_dtype=io_dtype, gzip_bytes=gzip_size(blob),
                            sparsity=facts.get("sparsity"))
    log.info("%s sha256=%s %s", result.summary(), art.sha256[:12], facts)
    return result
