"""MinIO SIGKILLed in the middle of a large upload (x20), on a private MinIO this suite starts and kills.

After each kill and restart: no partial object is visible under the key (either nothing, or the complete object
with its recorded sha256), and the retried upload succeeds and downloads back verified.
"""

from __future__ import annotations

import os
import random
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tasks.core.exceptions import StorageError
from tasks.core.storage import ArtifactStore, make_client, sha256_file
from tests.faults.procs import Minio

SIZE_MB = 16  # over boto3's 8 MiB multipart threshold: three parts in flight


@pytest.fixture(scope="module")
def minio(work: Path) -> Any:
    server = Minio(work / "minio" / "data").start()
    yield server
    server.kill()


def _store(server: Minio) -> ArtifactStore:
    return ArtifactStore(make_client(server.endpoint, server.user, server.secret), "faults")


def test_minio_killed_mid_upload(minio: Minio, work: Path, figures: Any) -> None:
    store = _store(minio)
    store.client.create_bucket(Bucket="faults")
    store.client.put_bucket_versioning(Bucket="faults", VersioningConfiguration={"Status": "Enabled"})
    big = work / "big.bin"
    big.write_bytes(os.urandom(SIZE_MB << 20))
    digest, started = sha256_file(big), time.monotonic()
    store.put_file("warmup/big.bin", big)
    took = time.monotonic() - started
    rng, reps, passed, lost, interrupted = random.Random(8), 20, 0, 0, 0
    for i in range(reps):
        key, errors = f"big/{i}.bin", []

        def upload(key: str = key, errors: list = errors, store: ArtifactStore = store) -> None:
            try:
                store.put_file(key, big)
            except StorageError as exc:
                errors.append(exc)

        thread = threading.Thread(target=upload)
        thread.start()
        time.sleep(rng.uniform(0.1, 0.9) * took)
        minio.kill()
        thread.join(timeout=120)
        interrupted += bool(errors)
        minio.start()
        store = _store(minio)
        listed = list(store.list(key))
        if listed:  # visible means complete: the whole size and the sha256 it was uploaded with
            head = store.head(key)
            lost += head.size_bytes != big.stat().st_size or head.sha256 != digest
        retried = store.put_file(key, big)
        back = store.fetch(store.ref(retried), work / "back.bin")
        passed += sha256_file(back) == digest and not thread.is_alive()
    figures("MinIO SIGKILLed mid-upload, then retry", reps, passed, lost,
            f"{SIZE_MB} MiB multipart; {interrupted} uploads interrupted")
    assert lost == 0 and passed == reps and interrupted >= reps // 2
