"""A SavedModel source at run time: verified fetch of a directory, its digest, the run's tar, conversion, predict."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from tasks.core.exceptions import IntegrityError
from tasks.core.modes import converter_settings
from tasks.core.storage import _mismatch
from tasks.ml import saved_model
from tasks.ml.convert import convert


@pytest.fixture(scope="module")
def module_dir(tmp_path_factory):
    """A SavedModel with no Keras in it: a tf.Module whose concrete function is the serving signature."""
    import tensorflow as tf

    class Module(tf.Module):
        def __init__(self):
            super().__init__()
            self.w = tf.Variable(tf.random.stateless_normal((8 * 8 * 3, 3), seed=(1, 2)))

        @tf.function(input_signature=[tf.TensorSpec((None, 8, 8, 3), tf.float32, name="pixels")])
        def serve(self, pixels):
            return {"probs": tf.nn.softmax(tf.reshape(pixels / 255.0, (-1, 8 * 8 * 3)) @ self.w)}

    out = tmp_path_factory.mktemp("module") / "sm"
    module = Module()
    tf.saved_model.save(module, str(out), signatures={"serving_default": module.serve})
    return out


def test_pack_is_deterministic_and_unpacks_to_the_same_files(module_dir, tmp_path):
    first = saved_model.pack(module_dir, tmp_path / "a.tar").read_bytes()
    second = saved_model.pack(module_dir, tmp_path / "b.tar").read_bytes()
    assert first == second
    back = saved_model.unpack(tmp_path / "a.tar", tmp_path / "back")
    files = sorted(p.relative_to(module_dir).as_posix() for p in module_dir.rglob("*") if p.is_file())
    assert sorted(p.relative_to(back).as_posix() for p in back.rglob("*") if p.is_file()) == files
    assert "saved_model.pb" in files and any(f.startswith("variables/") for f in files)


def test_tree_sha256_depends_on_paths_and_contents_not_order():
    a = saved_model.tree_sha256([("saved_model.pb", "1" * 64), ("variables/variables.index", "2" * 64)])
    assert a == saved_model.tree_sha256([("variables/variables.index", "2" * 64), ("saved_model.pb", "1" * 64)])
    assert a != saved_model.tree_sha256([("saved_model.pb", "1" * 64), ("variables/variables.index", "3" * 64)])
    assert a != saved_model.tree_sha256([("saved_model.pb", "1" * 64), ("variables/other.index", "2" * 64)])


def test_predict_and_every_ptq_mode_convert_from_the_serving_signature(module_dir):
    """fp32/dynamic/int8 straight from the SavedModel (no Keras), and they agree with its own outputs."""
    from tasks.steps.evaluate import TFLiteModel

    x = np.random.default_rng(0).uniform(0, 255, size=(40, 8, 8, 3)).astype(np.float32)
    probs = saved_model.predict(module_dir, x, batch_size=16)
    assert probs.shape == (40, 3) and np.allclose(probs.sum(-1), 1, atol=1e-5)
    calibration = lambda: ([x[i : i + 1]] for i in range(len(x)))  # noqa: E731
    for mode in ("fp32", "dynamic", "int8"):
        settings = converter_settings(mode)
        blob = convert(module_dir, settings, calibration if settings.needs_representative_data else None)
        agreement = (TFLiteModel(blob).predict(x, 8) == probs.argmax(-1)).mean()
        assert agreement >= (1.0 if mode == "fp32" else 0.8), (mode, agreement)


def test_mismatch_of_downloaded_bytes():
    md5 = "0" * 32
    assert _mismatch(10, "s" * 64, md5, 10, md5, "") == ""
    assert "bytes read" in _mismatch(9, "s" * 64, md5, 10, md5, "")
    assert "ETag" in _mismatch(10, "s" * 64, md5, 10, "1" * 32, "")
    assert _mismatch(10, "s" * 64, md5, 10, "abc-2", "") == ""  # a multipart ETag is not an MD5
    assert "recorded" in _mismatch(10, "s" * 64, md5, 10, "abc-2", "t" * 64)


@pytest.mark.integration
def test_fetch_is_verified_and_keeps_the_directory_layout(module_dir, artifact_store, tmp_path):
    prefix = f"test-byo/{uuid.uuid4().hex[:8]}/sm/"
    files = [p for p in module_dir.rglob("*") if p.is_file()]
    for path in files:
        artifact_store.put_file(prefix + path.relative_to(module_dir).as_posix(), path)
    got, source = saved_model.fetch(artifact_store, artifact_store.uri(prefix), tmp_path / "got")
    assert source.kind == "saved_model" and source.files == len(files)
    assert source.size_bytes == sum(p.stat().st_size for p in files)
    from tasks.core.storage import sha256_file

    expected = saved_model.tree_sha256([(p.relative_to(module_dir).as_posix(), sha256_file(p)) for p in files])
    assert source.sha256 == expected
    assert (got / "saved_model.pb").read_bytes() == (module_dir / "saved_model.pb").read_bytes()
    # an object whose bytes differ from the sha256 recorded at upload is refused
    key = prefix + "saved_model.pb"
    artifact_store.client.put_object(Bucket=artifact_store.bucket, Key=key, Body=b"tampered",
                                     Metadata={"sha256": "0" * 64})
    with pytest.raises(IntegrityError, match="recorded"):
        artifact_store.fetch_verified(artifact_store.uri(key), tmp_path / "x.pb")
