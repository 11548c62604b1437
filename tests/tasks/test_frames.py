"""Labelled device samples (``.npz``, ``x`` = the frame edgeops-serve received) as training images."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from tasks.core.exceptions import BadDataError
from tasks.ml.frames import as_training_image, frame_problem
from tasks.ml.images import check_images, image_problem
from tests.collect_helpers import write_samples


def _npz(path: Path, **arrays: object) -> Path:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    path.write_bytes(buf.getvalue())
    return path


def _decoded(path: Path, channels: int = 3) -> np.ndarray:
    import tensorflow as tf

    return tf.io.decode_image(path.read_bytes(), channels=channels, expand_animations=False).numpy()


def test_a_sample_as_the_service_writes_it_becomes_a_png_of_x(tmp_path: Path) -> None:
    rel, data = next(iter(write_samples(tmp_path, "run1.int8", 1, shape=(8, 8, 3)).items()))
    cached = tmp_path / "cache" / "sample.npz.0123456789ab"  # the loader's cache names: <key>.<etag>
    cached.parent.mkdir()
    cached.write_bytes(data)
    png = as_training_image(cached, 10_000)
    assert png.name.endswith(".png") and png.read_bytes().startswith(b"\x89PNG")
    assert (_decoded(png) == np.load(io.BytesIO(data))["x"]).all()  # lossless: the frame as received
    assert cached.read_bytes() == data  # the collected bytes (sha256 in the name) are never rewritten
    assert image_problem(png, 3, 10_000) is None
    assert as_training_image(cached, 10_000) == png  # converted once


@pytest.mark.parametrize("x", [np.full((1, 4, 5, 3), 7.4, np.float32), np.full((4, 5), 7, np.uint8),
                               np.full((4, 5, 1), 7, np.int64)])
def test_float_batched_and_grey_frames_are_accepted(tmp_path: Path, x: np.ndarray) -> None:
    png = as_training_image(_npz(tmp_path / "s.npz", x=x), 10_000)
    assert png.suffix == ".png"
    image = _decoded(png, channels=1)
    assert image.shape == (4, 5, 1) and (image == 7).all()


@pytest.mark.parametrize(("arrays", "reason"), [
    ({"y": np.zeros((4, 4, 3), np.uint8)}, "needs an array x"),
    ({"x": np.zeros((2, 4, 4, 3), np.uint8)}, "a frame is (H, W, C)"),
    ({"x": np.zeros((4, 4, 7), np.uint8)}, "a frame is (H, W, C)"),
    ({"x": np.full((4, 4, 3), 300.0)}, "outside 0..255"),
    ({"x": np.full((4, 4, 3), np.nan)}, "outside 0..255"),
    ({"x": np.array(["a", "b"])}, "dtype <U1"),
    ({"x": np.zeros((200, 100, 3), np.uint8)}, "20000 pixels, over the 10000"),
])
def test_a_sample_that_is_not_a_frame_is_named_with_the_reason(tmp_path: Path, arrays: dict, reason: str) -> None:
    path = _npz(tmp_path / "s.npz", **arrays)
    assert as_training_image(path, 10_000) == path  # not converted
    problem = frame_problem(path.read_bytes(), 10_000)
    assert problem and reason in problem
    with pytest.raises(BadDataError, match="1 of 2 images") as err:
        good = as_training_image(_npz(tmp_path / "g.npz", x=np.zeros((4, 4, 3), np.uint8)), 10_000)
        check_images("s3://datasets/pets", ["pets/cat/bad.npz", "pets/cat/good.npz"], [str(path), str(good)], 3,
                     10_000)
    assert f"pets/cat/bad.npz: {problem}" in str(err.value)


def test_an_object_array_is_refused_without_unpickling(tmp_path: Path) -> None:
    path = tmp_path / "s.npz"
    buf = io.BytesIO()
    np.savez(buf, x=np.array([{"a": 1}], dtype=object))
    path.write_bytes(buf.getvalue())
    assert "dtype object" in (frame_problem(path.read_bytes(), 10_000) or "")
    assert "not a readable .npz" in (frame_problem(b"PK\x03\x04 truncated", 10_000) or "")
