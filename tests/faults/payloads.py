"""Release payloads for fault cases: real TFLite files that are broken in the ways a bad model is."""

from __future__ import annotations

from pathlib import Path


def nan_tflite(path: Path) -> Path:
    """A valid 8x8x3 -> (1, 3) model whose every output is NaN (log of a negative number)."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([1, 8, 8, 3], tf.float32)])
    def model(x: tf.Tensor) -> tf.Tensor:
        return tf.math.log(tf.reduce_mean(x, axis=[1, 2]) - 1e6)

    converter = tf.lite.TFLiteConverter.from_concrete_functions([model.get_concrete_function()], model)
    path.write_bytes(converter.convert())
    return path


def garbage_tflite(path: Path) -> Path:
    """Bytes that are no flatbuffer: the interpreter refuses to load them."""
    path.write_bytes(b"TFL3" + bytes(range(256)) * 4)
    return path
