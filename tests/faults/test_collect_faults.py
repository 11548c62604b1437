"""The SSH session of a collection SIGKILLed mid-transfer (the sshd process serving it, on the device side),
then a second collection: nothing lost, nothing duplicated (one object version per key), the device emptied."""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tasks.core import keys
from tasks.core.exceptions import DeviceError
from tasks.core.storage import ArtifactStore, make_client
from tasks.device.transport import EnvTransport
from tasks.fleet.collect import collect_device
from tests.collect_helpers import remaining, write_samples, write_telemetry
from tests.faults.procs import Minio

SAMPLES, REPS = 300, 3


@pytest.fixture(scope="module")
def stores(work: Path) -> Any:
    server = Minio(work / "minio-collect" / "data").start()
    client = make_client(server.endpoint, server.user, server.secret)
    for bucket in ("artifacts", "datasets"):
        client.create_bucket(Bucket=bucket)
        client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    yield ArtifactStore(client, "artifacts"), ArtifactStore(client, "datasets")
    server.kill()


def _sessions(listener: int) -> list[int]:
    """The sshd processes serving connections: children of the listening sshd."""
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == listener:
            out.append(int(pid))
    return out


def _versions(store: ArtifactStore, prefix: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for page in store.client.get_paginator("list_object_versions").paginate(Bucket=store.bucket, Prefix=prefix):
        for v in page.get("Versions", []):
            counts[v["Key"]] = counts.get(v["Key"], 0) + 1
    return counts


def test_connection_cut_mid_collection_then_again(device_factory: Any, stores: Any, figures: Any) -> None:
    artifacts, datasets = stores
    rng, passed, lost, duplicated, cut_runs = random.Random(16), 0, 0, 0, 0
    for rep in range(REPS):
        dev, name = device_factory()
        release, prefix = "run.int8", f"ds{rep}"
        written = write_samples(dev.root, release, SAMPLES, seed=rep)
        tel_rel, tel = write_telemetry(dev.root, release, "inst", final=True)
        wanted = {keys.incoming_sample(prefix, name, release, rel.rsplit("/", 1)[1]) for rel in written}
        cut_at, errors = rng.randint(SAMPLES // 10, SAMPLES * 7 // 10), []

        def first(name: str = name, prefix: str = prefix, errors: list = errors) -> None:
            try:
                with EnvTransport(name, connect_attempts=1) as t:
                    collect_device(t, artifacts, dataset=f"s3://datasets/{prefix}")
            except DeviceError as exc:
                errors.append(exc)

        thread = threading.Thread(target=first)
        thread.start()
        deadline = time.monotonic() + 120
        while len(_versions(datasets, prefix)) < cut_at and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        for pid in _sessions(dev.proc.pid):
            os.kill(pid, signal.SIGKILL)
        thread.join(timeout=120)
        cut_runs += bool(errors)
        with EnvTransport(name) as t:
            second = collect_device(t, artifacts, dataset=f"s3://datasets/{prefix}")
        versions = _versions(datasets, prefix)
        tel_versions = _versions(artifacts, keys.telemetry(name, release, tel_rel.rsplit("/", 1)[1]))
        lost += len(wanted - set(versions)) + (len(tel_versions) != 1)
        duplicated += sum(n - 1 for n in versions.values()) + max(0, sum(tel_versions.values()) - 1)
        intact = all(datasets.find(k).sha256 == k.rsplit("-", 1)[1].removesuffix(".npz") for k in wanted)
        passed += (not thread.is_alive() and set(versions) == wanted and intact and second.ok
                   and remaining(dev.root) == [] and bool(tel))
    figures("collect: SSH session SIGKILLed mid-transfer, then again", REPS, passed, lost,
            f"{SAMPLES} samples + telemetry each; {cut_runs} runs cut; {duplicated} duplicated object versions")
    assert lost == 0 and duplicated == 0 and passed == REPS and cut_runs >= 1
