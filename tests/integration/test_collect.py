"""Collection on a real sshd device and the real MinIO: edgeops-serve's files -> MinIO, then deleted on the device.

The device is pi1's sshd with a deploy root of this test's own (its connection, another deploy_root), so the
files collected are exactly the ones written here, as the service writes them (tests/collect_helpers.py).
"""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path
from typing import Any

import pytest

from tasks.core import keys
from tasks.core.storage import ArtifactStore
from tasks.device.transport import EnvTransport
from tasks.fleet.collect import collect_device
from tasks.ml.data import list_image_folder
from tests.collect_helpers import remaining, state_dir, write_samples, write_telemetry
from tests.helpers import export_connections

pytestmark = pytest.mark.integration


@pytest.fixture
def device(stack_env: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str, Path]:
    """(device name, connection id, deploy root): pi1's sshd, this test's root."""
    name = f"col{uuid.uuid4().hex[:8]}"
    conn = {**stack_env["connections"]["edgeops_device_pi1"]}
    conn["extra"] = {**conn["extra"], "deploy_root": str(tmp_path / "root")}
    export_connections(monkeypatch, {f"edgeops_device_{name}": conn})
    return name, f"edgeops_device_{name}", tmp_path / "root"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_collect_uploads_verified_and_deletes_only_what_was_confirmed(device: Any, artifact_store: ArtifactStore,
                                                                      stack_env: dict[str, Any]) -> None:
    name, conn_id, root = device
    bucket = stack_env["s3"]["datasets_bucket"]
    prefix = f"test-collect-{uuid.uuid4().hex[:8]}"
    release, orphan = "run1.int8", "nomanifest-run.fp32"
    final_rel, final = write_telemetry(root, release, "a1b2c3", final=True)
    open_rel, _ = write_telemetry(root, release, "a1b2c3", final=False, hour=1)
    samples = write_samples(root, release, 12)
    kept = write_samples(root, orphan, 2, seed=1)  # no dataset override for it, no manifest: stays
    in_progress = state_dir(root) / "samples" / release / f".{next(iter(samples)).rsplit('/', 1)[1]}.tmp"
    in_progress.write_bytes(b"half a sample")
    datasets = ArtifactStore(artifact_store.client, bucket)

    with EnvTransport(name, conn_id) as transport:
        first = collect_device(transport, artifact_store, dataset="")  # per-release datasets: none resolve
    assert first.files == 1 and first.telemetry == 1 and first.failed == 14, first.summary()
    assert "no manifest" in first.errors[0]
    with EnvTransport(name, conn_id) as transport:
        record = collect_device(transport, artifact_store, dataset=f"s3://{bucket}/{prefix}")
    print(record.summary())
    assert (record.files, record.samples, record.telemetry, record.failed) == (14, 14, 0, 0), record.summary()
    assert record.bytes == sum(len(b) for b in (*samples.values(), *kept.values()))

    tel = artifact_store.find(keys.telemetry(name, release, final_rel.rsplit("/", 1)[1]))
    assert tel is not None and tel.sha256 == _sha(final) and tel.size_bytes == len(final)
    for rel, data in {**samples, **kept}.items():
        _, rel_release, file_name = rel.split("/")
        obj = datasets.find(keys.incoming_sample(prefix, name, rel_release, file_name))
        assert obj is not None and obj.sha256 == _sha(data) == file_name.rsplit("-", 1)[1].removesuffix(".npz")
    # taken files are gone; the open telemetry hour and the write in progress stay
    assert remaining(root) == sorted([open_rel, str(in_progress.relative_to(state_dir(root)))])

    with EnvTransport(name, conn_id) as transport:
        again = collect_device(transport, artifact_store, dataset=f"s3://{bucket}/{prefix}")
    assert (again.files, again.skipped, again.failed) == (0, 0, 0)

    # training never reads _incoming/: with two labelled class folders beside it, those are the classes
    for cls in ("cat", "dog"):
        for i in range(2):
            datasets.put_bytes(f"{prefix}/{cls}/{i}.png", b"png")
    entries, classes = list_image_folder(datasets, f"s3://{bucket}/{prefix}")
    assert classes == ["cat", "dog"] and len(entries) == 4
