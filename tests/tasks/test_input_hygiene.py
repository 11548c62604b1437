"""Input hygiene (issue 19): each bad input is one clear error, raised as early as it can be known.

Config time: odd dataset folders, run-id collisions, sizes that cannot fit in memory, unsafe variant names in a
stored manifest or verdict. Before training: every bad image of a folder, named by its key, in one error.
"""

from __future__ import annotations

import hashlib
import re
import struct
import zlib
from dataclasses import replace
from pathlib import Path

import pytest

from tasks.core import memory
from tasks.core.config import load_config
from tasks.core.exceptions import BadDataError, ConfigError, RecordError
from tasks.core.keys import run_key, safe_run_id, unsafe_key_reason
from tasks.core.manifest import RunManifest
from tasks.ml.images import check_images, image_problem
from tests.tasks.manifests import manifest, variant, verdict


# --- dataset folders: nothing may land outside the local cache ---------------------------------------------------
@pytest.mark.parametrize(("source", "message"), [
    ("s3://datasets/digits/../../../etc", "has a '..' path segment"),
    ("s3://datasets/./digits", "has a '.' path segment"),
    ("s3://datasets//digits", "is absolute"),
    ("s3://datasets/a//b", "has a '' path segment"),
    ("s3://datasets/a\\..\\b", "contains a backslash"),
    ("s3://datasets/digits\n", "contains a control character"),
    ("s3://../digits", "bucket '..' is not an S3 bucket name"),
    ("s3://Datasets/digits", "bucket 'Datasets' is not an S3 bucket name"),
])
def test_an_odd_dataset_folder_is_refused_at_config_time(source: str, message: str) -> None:
    with pytest.raises(ConfigError, match=rf"data.source='.*': .*{message}"):
        load_config("tiny", {"data.source": source})


def test_ordinary_dataset_folders_pass() -> None:
    for source in ("s3://datasets/digits", "s3://datasets/digits/", "s3://my-data.v2/a/b_c/d-e", "tfds:mnist"):
        assert load_config("tiny", {"data.source": source}).data.source == source


@pytest.mark.parametrize(("key", "reason"), [
    ("cat/../../../../home/x.png", "has a '..' path segment"), ("../x.png", "has a '..' path segment"),
    ("/etc/x.png", "is absolute"), ("cat//x.png", "has a '' path segment"), ("cat/./x.png", "has a '.' path segment"),
    ("cat\\..\\x.png", "contains a backslash"), ("cat/x\n.png", "contains a control character"),
])
def test_listed_keys_that_escape_are_named(key: str, reason: str) -> None:
    assert unsafe_key_reason(key) == reason


def test_ordinary_keys_are_safe() -> None:
    for key in ("cat/1.png", "dog/a..b.jpg", "0/x.y.z.png", "class with space/1.png"):
        assert unsafe_key_reason(key) is None


# --- run ids: the Airflow id -> key mapping is injective ----------------------------------------------------------
def test_a_crafted_run_id_cannot_take_another_runs_key() -> None:
    victim = "manual__2026-11-23T02:00:00+00:00"
    crafted = safe_run_id(victim)  # the victim's key, sent as a run id of its own
    assert run_key(crafted) != run_key(victim)
    assert run_key(crafted).startswith(f"{crafted}-")  # hashed like any id that needed changing
    stem = "a_b"
    twin = f"{stem}-{hashlib.sha256(b'a:b').hexdigest()[:10]}"
    assert len({run_key("a:b"), run_key(twin), run_key("a_b"), run_key("a+b")}) == 4


def test_ordinary_run_ids_keep_their_key() -> None:
    for rid in ("nightly-42", "ctest_rollout", "demo-1", "run-abcdefg123"):  # 'g' is not hex: not a hashed form
        assert run_key(rid) == rid
    scheduled = "scheduled__2026-11-23T02:00:00+00:00"
    assert run_key(scheduled) == safe_run_id(scheduled)  # the keys of existing runs do not move
    assert safe_run_id(run_key(scheduled)) == run_key(scheduled)  # a key is still its own safe form


# --- sizes that cannot fit in memory --------------------------------------------------------------------------
def test_a_batch_that_cannot_fit_names_the_knob_and_the_limit() -> None:
    with pytest.raises(ConfigError, match=r"data.batch_size=1024 at data.image_size=1024 x 3 channel\(s\) takes "
                                          r"12.0 GiB .* over 4.0 GiB \(1/2 of execution.memory_limit='8g'\): "
                                          r"lower data.batch_size to at most 341"):
        load_config("seed", {"data.image_size": 1024, "data.batch_size": 1024})


def test_calibration_samples_that_cannot_fit_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"quantize.calibration_samples=1000000000 .* lower "
                                          r"quantize.calibration_samples to at most 7133"):
        load_config("seed", {"quantize.calibration_samples": 10**9})


def test_the_bound_follows_the_memory_limit() -> None:
    big = {"data.image_size": 1024, "data.batch_size": 512}
    with pytest.raises(ConfigError, match="evaluate.batch_size|data.batch_size"):
        load_config("seed", big)
    assert load_config("seed", {**big, "execution.memory_limit": "64g"}).data.batch_size == 512
    with pytest.raises(ConfigError, match="evaluate.batch_size=64 .* execution.memory_limit='64m'"):
        load_config("seed", {"execution.memory_limit": "64m", "data.batch_size": 1})


def test_every_profile_fits_the_default_budget() -> None:
    for profile in ("tiny", "demo", "seed"):
        load_config(profile)
    assert memory.memory_bytes("8g") == 8 << 30 and memory.memory_bytes("512M") == 512 << 20
    assert memory.memory_bytes("1024") == 1024


# --- variant names from a stored manifest or verdict ----------------------------------------------------------
@pytest.mark.parametrize("bad", ["../../etc/cron.d/x", "fp32/../x", "int8\n", ".hidden", "a b", ""])
def test_unsafe_variant_names_in_a_manifest_are_refused(bad: str) -> None:
    good = manifest().to_dict()
    good["variants"][bad] = good["variants"]["fp32"]
    with pytest.raises(RecordError, match="unsafe variant name"):
        RunManifest.from_dict(good, "s3://artifacts/runs/x/manifest.json")


@pytest.mark.parametrize("field", ["deploy", "current", "tflite", "rescued"])
def test_unsafe_variant_names_in_a_verdict_are_refused(field: str) -> None:
    bad = "../evil"
    good = verdict(deploy=("fp32",), current="fp32")
    edits = {"deploy": {"deploy": (bad,)}, "current": {"current": bad},
             "tflite": {"tflite": {**good.tflite, bad: good.sample}}, "rescued": {"rescued": {"int8": bad}}}
    raw = replace(good, blessed=False, outcome="").to_xcom() if field != "tflite" else good.to_xcom()
    raw.update({k: list(v) if isinstance(v, tuple) else v for k, v in edits[field].items()})
    if field == "tflite":
        raw["tflite"] = {k: v.to_xcom() for k, v in edits[field]["tflite"].items()}
    with pytest.raises(RecordError, match="unsafe variant"):
        type(good).from_xcom(raw)


def test_todays_variant_names_pass() -> None:
    names = ("fp32", "fp16", "dynamic", "int8", "pruned", "qat_int8")
    m = manifest(variants={n: variant(0.9) for n in names}, gate=verdict(deploy=names, current="int8"))
    assert sorted(RunManifest.from_dict(m.to_dict()).variants) == sorted(names)


# --- images: one error naming every bad file, before training -------------------------------------------------
def _png(width: int, height: int, body: bytes | None = None) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = body if body is not None else b"".join(b"\x00" + b"\x80" * width * 3 for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def _jpeg() -> bytes:
    import numpy as np
    import tensorflow as tf

    return tf.io.encode_jpeg(np.full((16, 16, 3), 90, np.uint8)).numpy()


def test_every_bad_image_is_named_in_one_error(tmp_path: Path) -> None:
    good_png, good_jpg = _png(16, 16), _jpeg()
    files = {
        "cat/ok.png": good_png, "dog/ok.jpg": good_jpg,
        "cat/empty.png": b"",
        "cat/truncated.png": good_png[: len(good_png) // 2],
        "dog/truncated.jpg": good_jpg[: len(good_jpg) // 2],
        "dog/text.jpg": b"<html>not an image</html>",
        "dog/bomb.png": _png(100_000, 100_000, body=b"\x00" * 64),  # claims 10^10 pixels in a few hundred bytes
    }
    paths = []
    for key, blob in files.items():
        path = tmp_path / key.replace("/", "_")
        path.write_bytes(blob)
        paths.append(str(path))
    limit = memory.max_image_pixels("8g", 3)
    with pytest.raises(BadDataError) as caught:
        check_images("s3://datasets/pets", list(files), paths, 3, limit)
    text = str(caught.value)
    assert "5 of 7 images cannot be used" in text and "nothing was trained" in text
    assert "cat/empty.png: zero bytes" in text
    assert "cat/truncated.png: does not decode: Invalid PNG" in text
    assert re.search(r"dog/truncated.jpg: (corrupt JPEG header|does not decode): \w", text)
    assert "dog/text.jpg: not a JPEG or PNG file" in text
    assert f"dog/bomb.png: 100000x100000 = 10000000000 pixels, over the {limit}" in text
    assert "ok.png" not in text and "ok.jpg" not in text


def test_an_image_that_passes_decodes_in_the_training_pipeline(tmp_path: Path) -> None:
    import tensorflow as tf

    path = tmp_path / "ok.png"
    path.write_bytes(_png(20, 10))
    assert image_problem(path, 3, 200) is None and image_problem(path, 3, 199) is not None  # the bound is w x h
    decoded = tf.io.decode_image(tf.io.read_file(str(path)), channels=3, expand_animations=False)  # data.py's op
    assert tuple(decoded.shape) == (10, 20, 3)


def test_the_pixel_bound_is_derived_from_the_memory_budget() -> None:
    # 4 GiB input budget / (4 images decoded at once x 5 bytes per value x 3 channels)
    assert memory.max_image_pixels("8g", 3) == (4 << 30) // (4 * 5 * 3)
    assert load_config("tiny", {"execution.memory_limit": "16g"}).max_image_pixels == memory.max_image_pixels("16g", 3)
