"""Bring your own SavedModel through the whole nightly DAG (dag.test(), real MinIO, sshd device), and a source
that does not fit the data refused by resolve_config before any compute."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tasks.core import keys
from tasks.core.config import load_config
from tasks.core.exceptions import ConfigError
from tasks.core.keys import safe_run_id
from tasks.core.storage import ArtifactStore, sha256_file
from tasks.ml import saved_model
from tests.helpers import export_connections
from tests.integration.test_nightly_dag import _dag

pytestmark = pytest.mark.integration
MODES = ["fp32", "fp16", "dynamic", "int8"]


def _upload_dir(store: ArtifactStore, root: Path, prefix: str) -> str:
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        store.put_file(prefix + path.relative_to(root).as_posix(), path)
    return store.uri(prefix)


@pytest.fixture(scope="module")
def sources(digits, artifact_store, tmp_path_factory) -> dict[str, object]:
    """A tiny model trained here on the digits (16 x 16 x 3, 10 classes) as a SavedModel, plus two misfits:
    a 5-class SavedModel and a 24-pixel .keras."""
    import keras

    from tasks.ml import data, models

    tmp, tag = tmp_path_factory.mktemp("byo"), f"test-byo-sm/{uuid.uuid4().hex[:8]}"
    cfg = load_config("tiny", {"data.source": digits})
    splits = data.load_splits(cfg.data, artifact_store)
    keras.utils.set_random_seed(0)
    # the compact CNN, not the 'tiny' backbone: tiny reached ~0.7 test accuracy here and once 0.35 on another
    # CPU; the CNN's margin over the 0.5 asserted below holds whatever kernels train it
    model = models.build_model(cfg, splits.num_classes, backbone="cnn")
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    model.fit(data.batched(splits.train.cache(), 8, shuffle_seed=0), epochs=8, verbose=0)
    model.export(str(tmp / "good"), verbose=False)
    models.build_model(cfg, 5).export(str(tmp / "five"), verbose=False)
    models.build_model(load_config("tiny", {"data.image_size": 24}), 10).save(tmp / "big.keras")
    files = [(p.relative_to(tmp / "good").as_posix(), sha256_file(p)) for p in (tmp / "good").rglob("*") if p.is_file()]
    return {"good": _upload_dir(artifact_store, tmp / "good", f"{tag}/good/"),
            "five": _upload_dir(artifact_store, tmp / "five", f"{tag}/five/"),
            "big": artifact_store.uri(artifact_store.put_file(f"{tag}/big.keras", tmp / "big.keras").key),
            "empty": artifact_store.uri(f"{tag}/nothing-here/"), "good_sha256": saved_model.tree_sha256(files)}


@pytest.mark.parametrize(("name", "match"), [
    ("five", r"input \(None, 16, 16, 3\) / 5 classes do not match this config \(\(None, 16, 16, 3\) / 10 classes"),
    ("big", r"input \(None, 24, 24, 3\) / 10 classes do not match this config \(\(None, 16, 16, 3\) / 10 classes"),
    ("empty", "no saved_model.pb under this prefix"),
])
def test_resolve_config_refuses_a_source_that_does_not_fit(sources, digits, airflow_connections, name, match):
    from edgeops_airflow.params import resolve

    params = {"profile": "tiny", "data_source": digits, "model_source": sources[name]}
    with pytest.raises(ConfigError, match=match) as err:
        resolve(params, f"byo-{name}")
    fix = "data.image_size/data.channels" if name == "big" else "a dataset with the model's classes"
    assert name == "empty" or fix in str(err.value)


def test_resolve_config_accepts_a_fitting_saved_model(sources, digits, airflow_connections):
    from edgeops_airflow.params import resolve

    plan = resolve({"profile": "tiny", "data_source": digits, "model_source": sources["good"]},
                   "byo-good")
    assert plan.config["model"]["source"] == sources["good"]


def test_nightly_runs_on_a_saved_model_source(sources, digits, stack_env, airflow_db, artifact_store):
    """No training; quantize (four PTQ modes) -> evaluate -> gate -> publish on it (announce: tiny never ships)."""
    with pytest.MonkeyPatch.context() as mp:
        export_connections(mp, stack_env["connections"])
        dag_run = _dag().test(run_conf={"profile": "tiny", "data_source": digits, "model_source": sources["good"],
                                        "modes": MODES})
    assert "success" in str(dag_run.state).lower()
    run_id = safe_run_id(dag_run.run_id)
    manifest = artifact_store.get_json(keys.manifest(run_id))
    train = manifest["train"]
    assert train["epochs_run"] == 0 and train["model"]["uri"].endswith("/model/saved_model.tar")
    assert train["source"]["kind"] == "saved_model" and train["source"]["sha256"] == sources["good_sha256"]
    assert set(manifest["variants"]) == set(MODES) and manifest["gate"]["blessed"] is True
    fp32 = manifest["variants"]["fp32"]["accuracy"]
    assert fp32 > 0.5 and abs(manifest["evaluation"]["keras_accuracy"] - fp32) < 0.02
    assert keys.model(run_id, "saved_model.tar") in {a["key"] for a in manifest["artifacts"]}
    states = {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}
    assert states["announce"] == "skipped"  # blessed, but a tiny (test) run never starts a rollout by itself
