"""Warm starts come only from a finished run's model.keras, verified against its manifest (real MinIO)."""

from __future__ import annotations

import uuid

import pytest

from tasks.core import keys
from tasks.core.exceptions import ConfigError, IntegrityError
from tasks.core.manifest import ManifestArtifact
from tasks.ml.models import warm_start_ref
from tests.tasks.manifests import manifest, verdict

pytestmark = pytest.mark.integration


@pytest.fixture
def finished_model(artifact_store, admin_s3, tmp_path):
    import keras

    run_id = f"test-warm-{uuid.uuid4().hex[:8]}"
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    model.save(tmp_path / "model.keras")
    art = artifact_store.put_file(keys.model(run_id), tmp_path / "model.keras")
    listed = ManifestArtifact("model/model.keras", art.key, art.sha256, art.size_bytes)
    unblessed = manifest(run_id, gate=verdict(False), artifacts=(listed,))  # never a rollout's or a champion
    artifact_store.put_json(keys.manifest(run_id), unblessed.to_dict())
    yield run_id, artifact_store.uri(keys.model(run_id))
    admin_s3.delete_object(Bucket=artifact_store.bucket, Key=keys.manifest(run_id))  # not `runs latest`


def test_a_finished_runs_model_is_fetched_verified(artifact_store, finished_model, tmp_path):
    _, uri = finished_model
    ref = warm_start_ref(artifact_store, uri)
    assert artifact_store.fetch(ref, tmp_path / "start.keras").stat().st_size == ref.size_bytes


def test_a_replaced_model_is_refused(artifact_store, finished_model, tmp_path):
    run_id, uri = finished_model
    artifact_store.put_bytes(keys.model(run_id), b"not the model the run published")
    with pytest.raises(IntegrityError):
        artifact_store.fetch(warm_start_ref(artifact_store, uri), tmp_path / "start.keras")


@pytest.mark.parametrize("key", ["runs/nope-never-finished/model/model.keras", "runs/x/tflite/int8.tflite",
                                 "elsewhere/model.keras"])
def test_anything_but_a_finished_runs_model_is_refused(artifact_store, key):
    with pytest.raises(ConfigError, match="model.weights="):
        warm_start_ref(artifact_store, artifact_store.uri(key))
