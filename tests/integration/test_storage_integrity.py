"""Artifacts are verified end to end: a consumer gets exactly the bytes the producer handed over, or a clear,
fatal error. Real MinIO (the artifacts bucket is versioned), real overwrites."""

from __future__ import annotations

import dataclasses
import uuid

import pytest

from tasks.core.exceptions import FatalError, IntegrityError

pytestmark = pytest.mark.integration


@pytest.fixture
def written(artifact_store, tmp_path):
    key = f"itest/integrity-{uuid.uuid4().hex[:8]}/int8.tflite"
    (tmp_path / "a.bin").write_bytes(b"evaluated bytes" * 1000)
    return artifact_store.ref(artifact_store.put_file(key, tmp_path / "a.bin")), key


def test_refs_carry_sha256_and_version(written):
    ref, _ = written
    assert len(ref.sha256) == 64 and ref.version_id and ref.size_bytes == 15000


def test_an_overwritten_object_still_yields_the_recorded_version(artifact_store, written, tmp_path):
    ref, key = written
    artifact_store.put_bytes(key, b"overwritten by someone else")
    got = artifact_store.fetch(ref, tmp_path / "got.bin")
    assert got.read_bytes() == b"evaluated bytes" * 1000  # exactly what was evaluated, not the new bytes


def test_a_mismatch_is_refused_and_never_retried(artifact_store, written, tmp_path):
    ref, key = written
    artifact_store.put_bytes(key, b"overwritten by someone else")
    unpinned = dataclasses.replace(ref, version_id=None)  # e.g. a bucket without versioning
    with pytest.raises(IntegrityError, match="overwritten or corrupted") as err:
        artifact_store.fetch(unpinned, tmp_path / "got.bin")
    assert isinstance(err.value, FatalError)
    assert not (tmp_path / "got.bin").exists() and not (tmp_path / "got.bin.part").exists()
