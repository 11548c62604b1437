"""Champion lookup on real MinIO. The fake runs live under a prefix of their own (``find``'s ``runs_prefix``),
never under the shared ``runs/``: the pipeline's credentials cannot delete objects, and a fake manifest there
would become ``runs latest`` or another run's champion."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace

import pytest

from tasks.core.exceptions import IntegrityError
from tasks.core.manifest import ManifestArtifact
from tasks.core.results import ArtifactRef
from tasks.core.storage import ArtifactStore
from tasks.registry import champion
from tests.tasks.manifests import manifest, verdict
from tests.tasks.test_manifest import DATA

pytestmark = pytest.mark.integration
SOURCE = "s3://datasets/digits"


@pytest.fixture
def prefix() -> str:
    return f"tests/champion-{uuid.uuid4().hex[:8]}/runs/"


def _run(store: ArtifactStore, prefix: str, run_id: str, classes: list[str], blessed: bool | None,
         source: str = SOURCE, profile: str = "seed") -> ArtifactRef:
    """A finished run's manifest; ``blessed`` None: a schema-1 manifest, written before the gate recorded a
    verdict (what was deployed was blessed), which lists its fp32 by key + sha256 only."""
    key = f"{prefix}{run_id}/tflite/fp32.tflite"
    art = store.put_bytes(key, f"model of {run_id}".encode())
    fp32 = store.ref(art)
    listed = ManifestArtifact("tflite/fp32.tflite", key, art.sha256, art.size_bytes)
    if blessed is None:
        raw = json.loads((DATA / "manifest_schema1.json").read_text())
        raw.update(run_id=run_id, dataset={"source": source, "classes": classes}, artifacts=[listed.to_xcom()])
    else:  # the gate's verdict pins the exact version
        gate = replace(verdict(blessed), tflite={"fp32": fp32})
        config = {"profile": profile, "ships": profile != "tiny", "data": {"image_size": 32, "channels": 3}}
        raw = manifest(run_id, gate=gate, source=source, classes=tuple(classes), artifacts=(listed,),
                       config=config).to_dict()
    store.put_json(f"{prefix}{run_id}/manifest.json", raw)
    return fp32


def test_newest_blessed_run_on_the_same_dataset_and_classes_is_the_champion(artifact_store, prefix, tmp_path):
    store = artifact_store
    blessed = _run(store, prefix, "r1-blessed", ["a", "b"], True)
    _run(store, prefix, "r2-refused", ["a", "b"], False)
    _run(store, prefix, "r3-other-classes", ["a", "c"], True)
    _run(store, prefix, "r4-other-source", ["a", "b"], True, source=SOURCE + "x")
    found = champion.find(store, SOURCE, ["a", "b"], exclude_run="r9-this-run", runs_prefix=prefix)
    assert found is not None and found.run_id == "r1-blessed" and found.fp32 == blessed
    assert (found.image_size, found.channels) == (32, 3)
    store.put_bytes(f"{prefix}r1-blessed/tflite/fp32.tflite", b"overwritten later")
    assert champion.fetch_fp32(store, found, tmp_path) == b"model of r1-blessed"  # the pinned version
    assert champion.find(store, SOURCE, ["a", "b"], exclude_run="r1-blessed", runs_prefix=prefix) is None


def test_first_run_has_no_champion_and_a_tampered_champion_is_refused(artifact_store, prefix, tmp_path):
    store = artifact_store
    assert champion.find(store, SOURCE, ["a", "b"], exclude_run="x", runs_prefix=prefix) is None
    _run(store, prefix, "r1", ["a", "b"], None)  # pre-gate manifest: deployed = blessed
    store.put_bytes(f"{prefix}r1/tflite/fp32.tflite", b"overwritten")
    found = champion.find(store, SOURCE, ["a", "b"], exclude_run="x", runs_prefix=prefix)
    assert found is not None and found.fp32.version_id is None
    with pytest.raises(IntegrityError, match="overwritten or corrupted"):
        champion.fetch_fp32(store, found, tmp_path)


def test_champion_identity_normalised_source_shipping_profiles_and_the_fleet(artifact_store, prefix):
    """A trailing slash is the same data; a test profile's run is never a champion; the run the fleet serves
    beats a newer blessed run."""
    store = artifact_store
    _run(store, prefix, "r1-served", ["a", "b"], True)
    _run(store, prefix, "r2-newer", ["a", "b"], True)
    _run(store, prefix, "r3-tiny", ["a", "b"], True, profile="tiny")
    newest = champion.find(store, SOURCE + "/", ["a", "b"], exclude_run="x", runs_prefix=prefix)
    assert newest is not None and newest.run_id == "r2-newer"  # not r3-tiny, and found through "digits/"
    served = champion.find(store, SOURCE, ["a", "b"], exclude_run="x", runs_prefix=prefix,
                           fleet_runs=["r1-served"])
    assert served is not None and served.run_id == "r1-served"
    gone = champion.find(store, SOURCE, ["a", "b"], exclude_run="x", runs_prefix=prefix, fleet_runs=["elsewhere"])
    assert gone is not None and gone.run_id == "r2-newer"  # nothing of ours on the fleet: the newest blessed
