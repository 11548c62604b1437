"""A model's input/output read from its files without TensorFlow, checked against what TF itself says."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tasks.core.config import load_config
from tasks.core.exceptions import ConfigError
from tasks.core.keys import source_kind
from tasks.ml.model_io import ModelIO, keras_file_io, saved_model_io
from tasks.ml.model_source import check_io
from tests.conftest import REPO


def _functional(shape=(16, 16, 3), classes=4):
    import keras

    inputs = keras.Input(shape, name="image")
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.Conv2D(4, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.1)(keras.layers.Dense(classes)(x))
    return keras.Model(inputs, keras.layers.Softmax()(x))


def _sequential(shape=(12, 12, 1), classes=5):
    import keras

    return keras.Sequential([keras.Input(shape), keras.layers.Flatten(), keras.layers.Dense(classes),
                             keras.layers.Activation("softmax")])


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    """Real files of every kind a model.source may be, with what TF says their input/output is."""
    import tensorflow as tf

    out = tmp_path_factory.mktemp("sources")
    func, seq = _functional(), _sequential()
    for model, name in ((func, "func"), (seq, "seq")):
        model.save(out / f"{name}.keras")
        model.save(out / f"{name}.h5")
    func.export(str(out / "exported"), verbose=False)
    tf.saved_model.save(seq, str(out / "tf_saved"))

    class Module(tf.Module):  # no Keras at all: a concrete function as the serving signature
        def __init__(self):
            super().__init__()
            self.w = tf.Variable(tf.random.normal((8 * 8 * 3, 6), seed=1))

        @tf.function(input_signature=[tf.TensorSpec((None, 8, 8, 3), tf.float32, name="pixels")])
        def serve(self, pixels):
            return {"probs": tf.nn.softmax(tf.reshape(pixels, (-1, 8 * 8 * 3)) / 255.0 @ self.w)}

    module = Module()
    tf.saved_model.save(module, str(out / "module"), signatures={"serving_default": module.serve})
    return out, {"func": ModelIO((None, 16, 16, 3), 4), "seq": ModelIO((None, 12, 12, 1), 5),
                 "exported": ModelIO((None, 16, 16, 3), 4), "tf_saved": ModelIO((None, 12, 12, 1), 5),
                 "module": ModelIO((None, 8, 8, 3), 6)}


@pytest.mark.parametrize("name", ["func.keras", "func.h5", "seq.keras", "seq.h5"])
def test_keras_files(model_files, name):
    out, want = model_files
    assert keras_file_io(str(out / name), name) == want[name.split(".")[0]]


@pytest.mark.parametrize("name", ["exported", "tf_saved", "module"])
def test_saved_models_match_what_tensorflow_loads(model_files, name):
    import tensorflow as tf

    out, want = model_files
    io = saved_model_io((out / name / "saved_model.pb").read_bytes(), name)
    fn = tf.saved_model.load(str(out / name)).signatures["serving_default"]
    (spec,) = fn.structured_input_signature[1].values()
    (result,) = fn.structured_outputs.values()
    assert io == want[name]
    assert io.input_shape == tuple(spec.shape) and io.output_width == result.shape[-1]


def test_reading_them_imports_no_tensorflow(model_files):
    out, _ = model_files
    code = (f"import sys; from tasks.ml.model_io import keras_file_io, saved_model_io; from pathlib import Path; "
            f"p = Path({str(out)!r}); keras_file_io(str(p / 'func.keras'), 'k'); keras_file_io(str(p / 'seq.h5'), 'h');"
            f"saved_model_io((p / 'module' / 'saved_model.pb').read_bytes(), 's'); "
            f"import tasks.ml.model_source, tasks.core.config; "
            f"bad = [m for m in ('tensorflow', 'keras', 'tf_keras') if m in sys.modules]; assert not bad, bad")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_not_a_model_is_a_config_error(tmp_path):
    (tmp_path / "x.keras").write_bytes(b"not a zip")
    with pytest.raises(ConfigError, match="not a readable Keras model file"):
        keras_file_io(str(tmp_path / "x.keras"), "model.source=x")
    with pytest.raises(ConfigError, match="not a SavedModel protobuf"):
        saved_model_io(b"\xff\xff\xff", "model.source=y")


def test_a_saved_model_without_serving_default_is_refused(model_files, tmp_path):
    import tensorflow as tf

    tf.saved_model.save(tf.Module(), str(tmp_path / "empty"))
    with pytest.raises(ConfigError, match="no 'serving_default' signature"):
        saved_model_io((tmp_path / "empty" / "saved_model.pb").read_bytes(), "model.source=z")


@pytest.mark.parametrize(("uri", "kind"), [("s3://b/m.keras", "keras"), ("s3://b/a/m.h5", "h5"),
                                           ("s3://b/sm/", "saved_model"), ("s3://b/", None), ("s3://b/sm", None),
                                           ("/tmp/m.keras", None), ("s3://b/m.keras.bak", None)])
def test_source_kind(uri, kind):
    assert source_kind(uri) == kind


def test_check_io_names_both_shapes_and_what_to_change():
    cfg = load_config("tiny")  # 16 x 16 x 3
    check_io(ModelIO((None, 16, 16, 3), 10), cfg, 10, "m")
    check_io(ModelIO((None, 16, 16, 3), None), cfg, 10, "m")  # width unknown here: the train step checks it
    with pytest.raises(ConfigError) as shape:
        check_io(ModelIO((None, 32, 32, 1), 10), cfg, 10, "model.source=s3://b/sm/")
    assert "(None, 32, 32, 1)" in str(shape.value) and "(None, 16, 16, 3)" in str(shape.value)
    assert "data.image_size/data.channels" in str(shape.value) and "classes of the model" not in str(shape.value)
    with pytest.raises(ConfigError) as classes:
        check_io(ModelIO((None, 16, 16, 3), 5), cfg, 10, "model.source=s3://b/sm/")
    assert "/ 5 classes" in str(classes.value) and "/ 10 classes" in str(classes.value)
    assert "a dataset with the model's classes" in str(classes.value)
