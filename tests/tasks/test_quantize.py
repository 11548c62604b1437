"""Every quantization mode: tensor dtypes, sizes, and the errors for bad combinations."""

from __future__ import annotations

import numpy as np
import pytest

from tasks.core.modes import converter_settings
from tasks.ml import data
from tasks.ml.convert import convert
from tests.tasks.conftest import make_splits


def _details(blob: bytes):
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=blob)
    interp.allocate_tensors()
    return interp.get_input_details()[0], interp.get_output_details()[0], interp.get_tensor_details()


def _representative():
    splits = make_splits()
    images = list(data.calibration_images(splits, 20))
    return lambda: ([img] for img in images)


@pytest.fixture(scope="module")
def converted(tiny_saved_model):
    blobs = {}
    for mode in ("fp32", "fp16", "dynamic"):
        blobs[mode] = convert(tiny_saved_model, converter_settings(mode))
    for io in ("int8", "uint8"):
        blobs[f"int8-{io}"] = convert(tiny_saved_model, converter_settings("int8", io), _representative())
    return blobs


@pytest.mark.parametrize(
    ("mode", "io", "weight_dtype"),
    [("fp32", np.float32, np.float32), ("fp16", np.float32, np.float16), ("dynamic", np.float32, np.int8),
     ("int8-int8", np.int8, np.int8), ("int8-uint8", np.uint8, np.int8)],
)
def test_mode_dtypes(converted, mode, io, weight_dtype):
    inp, out, tensors = _details(converted[mode])
    assert inp["dtype"] == io and out["dtype"] == io
    dtypes = {t["dtype"] for t in tensors}
    assert weight_dtype in dtypes


def test_quantized_models_are_smaller_than_fp32(converted):
    fp32 = len(converted["fp32"])
    assert len(converted["int8-int8"]) < fp32
    assert len(converted["dynamic"]) < fp32
    assert len(converted["fp16"]) < fp32


def test_full_int8_has_no_float_kernels(converted):
    _, _, tensors = _details(converted["int8-int8"])
    float_tensors = [t["name"] for t in tensors if t["dtype"] == np.float32]
    assert float_tensors == []


@pytest.mark.parametrize(
    ("mode", "io", "match"),
    [("int4", None, "unknown quantization mode"), ("fp16", "int8", "needs full-integer"),
     ("dynamic", "uint8", "needs full-integer"), ("int8", "int16", "must be 'int8' or 'uint8'")],
)
def test_invalid_combinations_raise_value_error(mode, io, match):
    with pytest.raises(ValueError, match=match):
        converter_settings(mode, io)


def test_int8_without_representative_data_is_refused(tiny_saved_model):
    with pytest.raises(ValueError, match="needs representative data"):
        convert(tiny_saved_model, converter_settings("int8"))


def test_calibration_draws_from_train_split_only():
    splits = make_splits()
    images = list(data.calibration_images(splits, 40))
    assert len(images) == 40
    assert all(img.shape == (1, 16, 16, 3) and img.max() < 85 for img in images)


def test_too_few_calibration_samples_is_a_clear_error():
    with pytest.raises(ValueError, match="calibration_samples=41 but the train split has only 40"):
        list(data.calibration_images(make_splits(), 41))
