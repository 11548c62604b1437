"""TFLite conversion: ``ConverterSettings`` (from the mode table, tasks/core/modes.py) -> TFLiteConverter."""

from __future__ import annotations

import gzip
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tasks.core.modes import ConverterSettings


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


def gzip_size(blob: bytes) -> int:
    """Compressed size: what a pruned model saves shows only here (zeros still take 4 bytes in the flatbuffer)."""
    return len(gzip.compress(blob, compresslevel=9, mtime=0))
