"""Bad dataset input against the real MinIO and the real train step (issue 19): refused before anything is
written outside the cache, and before any training.

* ``../`` in the dataset folder: the train step refuses it at config time (exit 2, not retried); no file appears
  outside the local cache. (MinIO itself refuses to store a key with a ``..`` segment; S3 does not, so the listing
  is checked too: tests/tasks/test_input_hygiene.py.)
* a folder with a corrupt and a zero-byte image among good ones: the train step fails before training, with one
  error naming both keys; nothing of the run is written (``history.json`` is written right after training).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tasks.core import keys
from tasks.core.names import EXIT_NO_RETRY
from tasks.core.storage import ArtifactStore
from tests.conftest import REPO

ESCAPES = ("s3://datasets/digits/../../../../tmp/h19-escape", "s3://datasets/../artifacts/runs",
           "s3://datasets//etc/cron.d", "s3://datasets/digits/./../x")


def _env(stack_env: dict[str, Any], cache: Path) -> dict[str, str]:
    s3 = stack_env["s3"]
    return {**os.environ, "EDGEOPS_S3_ENDPOINT": s3["endpoint"], "AWS_ACCESS_KEY_ID": s3["access_key"],
            "AWS_SECRET_ACCESS_KEY": s3["secret_key"], "EDGEOPS_ARTIFACTS_BUCKET": s3["artifacts_bucket"],
            "EDGEOPS_CACHE": str(cache)}


def _train(env: dict[str, str], run_id: str, source: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tasks.cli", "step", "train", "--run-id", run_id, "--profile",
                           "tiny", "--set", f"data.source={source}"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")} if root.exists() else set()


def test_a_dotdot_dataset_key_is_refused(stack_env: dict[str, Any], artifact_store: ArtifactStore, tmp_path: Path,
                                         figures: Any) -> None:
    sandbox = tmp_path / "sandbox"  # the cache lives two levels down: an escape would land in the sandbox
    cache = sandbox / "a" / "cache"
    cache.mkdir(parents=True)
    passed = lost = 0
    for source in ESCAPES:
        run_id = f"fault-dotdot-{uuid.uuid4().hex[:8]}"
        proc = _train(_env(stack_env, cache), run_id, source)
        outside = _files(sandbox) - _files(cache) - {cache, cache.parent}
        lost += len(outside) + len(list(artifact_store.list(keys.run_prefix(run_id))))
        refused = (proc.returncode == EXIT_NO_RETRY and f"data.source={source!r}" in proc.stderr
                   and "edgeops: config error" in proc.stderr)
        passed += refused and not _files(cache)
        assert refused, proc.stderr[-1500:]
    figures("dataset key with ../: refused", len(ESCAPES), passed, lost, "config error, exit 2, nothing downloaded")
    assert passed == len(ESCAPES) and lost == 0


@pytest.fixture
def bad_folder(stack_env: dict[str, Any], artifact_store: ArtifactStore, admin_s3: Any) -> Any:
    from tasks.ml.seed_data import digit_pngs

    bucket = stack_env["s3"]["datasets_bucket"]
    store, prefix = ArtifactStore(artifact_store.client, bucket), f"fault-badimg-{uuid.uuid4().hex[:8]}"
    pngs = {rel: blob for rel, blob in digit_pngs()[:400] if rel.split("/")[0] in ("0", "1")}
    for rel, blob in pngs.items():
        store.put_bytes(f"{prefix}/{rel}", blob, content_type="image/png")
    good = next(iter(pngs.values()))
    corrupt, empty = f"{prefix}/0/corrupt.png", f"{prefix}/1/empty.png"
    store.put_bytes(corrupt, good[: len(good) // 2], content_type="image/png")  # truncated mid-stream
    store.put_bytes(empty, b"", content_type="image/png")
    yield f"s3://{bucket}/{prefix}", corrupt, empty, len(pngs) + 2
    for obj in list(store.list(prefix + "/")):
        admin_s3.delete_object(Bucket=bucket, Key=obj["Key"])


def test_corrupt_and_empty_images_are_refused_before_training(stack_env: dict[str, Any],
                                                              artifact_store: ArtifactStore, bad_folder: Any,
                                                              tmp_path: Path, figures: Any) -> None:
    source, corrupt, empty, total = bad_folder
    run_id = f"fault-badimg-{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    proc = _train(_env(stack_env, tmp_path / "cache"), run_id, source)
    took = time.monotonic() - started
    written = list(artifact_store.list(keys.run_prefix(run_id)))
    err = proc.stderr
    assert proc.returncode == EXIT_NO_RETRY, err[-2000:]
    assert "BadDataError (not retried)" in err and f"2 of {total} images cannot be used" in err
    assert f"{corrupt}: does not decode" in err and f"{empty}: zero bytes" in err
    assert "Epoch 1" not in err and not written  # nothing trained, nothing of the run stored
    figures("image folder with a corrupt and a zero-byte image: refused before training", 1, 1, len(written),
            f"one error naming both, exit 2 after {took:.0f}s, {total} images checked")
