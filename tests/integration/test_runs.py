"""`edgeops runs` queries against the real MinIO started by scripts/devstack (no mocks)."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

import pytest

from tasks.core import keys
from tasks.core.exceptions import StorageError
from tasks.core.manifest import ManifestArtifact
from tasks.core.results import BenchmarkResult, ModelBench
from tasks.core.storage import ArtifactStore
from tasks.registry import runs
from tests.tasks.manifests import REF, variant, verdict
from tests.tasks.manifests import manifest as build_manifest

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def store(artifact_store: ArtifactStore) -> ArtifactStore:
    return artifact_store


@pytest.fixture
def finished_run(store: ArtifactStore, admin_s3):
    """A tiny finished run: two artifacts, then manifest.json last. Removed afterwards so that
    `edgeops runs latest` does not point at test data."""
    run_id = f"test-runs-{uuid.uuid4().hex[:12]}"
    arts = [
        store.put_bytes(f"runs/{run_id}/tflite/int8.tflite", b"\x00TFL3" * 64, name="int8.tflite"),
        store.put_json(f"runs/{run_id}/eval/metrics.json", {"int8": {"accuracy": 0.95}}, name="metrics"),
    ]
    bench = ModelBench({"p50": 1.0}, 0.95, 1.0, 50.0, 32, "int8", 320)
    device = BenchmarkResult("pi1", "x86_64", f"{run_id}.int8", "int8", "host", REF, {"int8": bench})
    manifest = build_manifest(
        run_id, {"fp32": variant(0.97), "int8": variant(0.95)}, verdict(True, ("int8",), "int8"),
        code_version="0123456789abcdef0123", created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        config={"profile": "tiny"}, artifacts=tuple(ManifestArtifact(a.name, a.key, a.sha256, a.size_bytes)
                                                    for a in arts), devices=(device,))
    time.sleep(1.1)  # LastModified has 1 s resolution on S3: make this manifest strictly the newest
    store.put_json(keys.manifest(run_id), manifest.to_dict(), name="manifest")
    yield run_id, manifest
    for key in [a.key for a in arts] + [keys.manifest(run_id), keys.blessing(run_id)]:
        admin_s3.delete_object(Bucket=store.bucket, Key=key)  # a delete marker; versions stay


def test_list_resolve_and_verify(store: ArtifactStore, finished_run) -> None:
    run_id, manifest = finished_run
    rows = runs.list_runs(store)
    row = next(r for r in rows if r["run_id"] == run_id)
    assert row["code_version"] == "01234567" and row["profile"] == "tiny" and row["current"] == "int8"
    assert row["fp32_accuracy"] == 0.97 and row["devices"] == 1 and "error" not in row
    assert rows[0]["run_id"] == run_id  # newest first
    assert run_id in runs.format_table(rows) and "97.00%" in runs.format_table(rows)

    assert runs.resolve(store, "latest") == manifest
    assert runs.resolve(store, run_id) == manifest
    assert runs.verify(store, manifest) == []


def test_verify_reports_tampered_and_missing_artifacts(store: ArtifactStore, finished_run, admin_s3) -> None:
    run_id, manifest = finished_run
    first, second = manifest.artifacts
    store.put_bytes(first.key, b"\xffTFL3" * 64)  # same size, different bytes
    problems = runs.verify(store, manifest)
    assert len(problems) == 1 and problems[0].startswith(first.key) and "sha256" in problems[0]

    admin_s3.delete_object(Bucket=store.bucket, Key=second.key)
    problems = runs.verify(store, manifest)
    assert [p.split(":")[0] for p in problems] == [first.key, second.key]


def test_missing_run_gives_clear_error(store: ArtifactStore) -> None:
    missing = f"test-runs-missing-{uuid.uuid4().hex[:12]}"
    expected = f"run {missing} has no manifest: it did not finish or does not exist"
    with pytest.raises(StorageError, match=expected):
        runs.resolve(store, missing)


def test_latest_in_empty_bucket_gives_clear_error(admin_s3) -> None:
    bucket = f"test-runs-{uuid.uuid4().hex[:12]}"
    admin_s3.create_bucket(Bucket=bucket)
    try:
        empty = ArtifactStore(admin_s3, bucket)
        assert runs.list_runs(empty) == []
        with pytest.raises(StorageError, match=rf"no finished runs in s3://{bucket}/runs/ \(a run writes"):
            runs.resolve(empty, "latest")
    finally:
        admin_s3.delete_bucket(Bucket=bucket)


def test_a_rollout_ships_the_announced_manifest_version_not_a_newer_one(store: ArtifactStore, finished_run) -> None:
    """Issue 18: a new manifest version written with the pipeline's credentials after announce (another current
    variant, other artifact refs) does not change what the rollout ships, whether the asset event or a person
    started it: the version the signed blessing names is read."""
    from types import SimpleNamespace

    from edgeops_airflow.rollout import _event, _pinned
    from edgeops_airflow.signing import release_trust

    from tasks.core import names
    from tasks.fleet import blessing

    run_id, manifest = finished_run
    announced = runs.pin(store, run_id)
    assert announced.manifest == manifest and announced.ref.version_id
    blessing.publish(store, release_trust(), blessing.Blessing.of(run_id, manifest, announced.ref))
    forged = build_manifest(run_id, {"fp32": variant(0.99)}, verdict(True, ("fp32",), "fp32"),
                            config={"profile": "tiny"})
    store.put_json(keys.manifest(run_id), forged.to_dict(), name="manifest")  # the pipeline's service account
    events = {f"Asset(name='{names.BLESSED_ASSET}')": [
        SimpleNamespace(extra={"run_id": run_id, "manifest": announced.ref.to_xcom()})]}
    shipped = _pinned(store, run_id, _event(events))
    assert shipped.manifest == manifest and shipped.ref == announced.ref
    assert _pinned(store, run_id, ("", None)).ref == announced.ref  # by hand: the blessed version, not the newest
    assert runs.load_pinned(store, announced.ref).manifest.verdict.current == "int8"
    assert runs.pin(store, run_id).manifest.verdict.current == "fp32"  # the newest version, never shipped
    line, problems = blessing.audit(store, release_trust().public_keys(), run_id)  # `edgeops runs verify`
    assert "signed by a trusted key" in line and problems == [
        f"manifest.json was rewritten after the gate blessed it: the newest version "
        f"{next(store.versions(keys.manifest(run_id)))} is not the blessed {announced.ref.version_id} "
        "(only the blessed one ever ships)"]


def test_runs_verify_checks_the_blessing_signature(store: ArtifactStore, finished_run, stack_env) -> None:
    """`edgeops runs verify` (the CLI, with the stack's env) checks the blessing against EDGEOPS_TRUSTED_KEYS:
    signed by the platform passes; the same blessing with no trusted key, or another key, is a problem."""
    import os
    import subprocess
    import sys

    from edgeops_airflow.signing import release_trust

    from tasks.core import names
    from tasks.device import signing
    from tasks.fleet import blessing

    run_id, manifest = finished_run
    blessing.publish(store, release_trust(), blessing.Blessing.of(run_id, manifest, runs.pin(store, run_id).ref))

    def verify(trusted: str) -> subprocess.CompletedProcess:
        s3 = stack_env["s3"]
        env = {**os.environ, names.ENV_TRUSTED_KEYS: trusted, "EDGEOPS_S3_ENDPOINT": s3["endpoint"],
               "AWS_ACCESS_KEY_ID": s3["access_key"], "AWS_SECRET_ACCESS_KEY": s3["secret_key"],
               "EDGEOPS_ARTIFACTS_BUCKET": store.bucket}
        return subprocess.run([sys.executable, "-m", "tasks.cli", "runs", "verify", run_id], env=env,
                              capture_output=True, text=True, timeout=120)

    ok = verify(release_trust().public_hex)
    assert ok.returncode == 0 and "blessing signed by a trusted key" in ok.stdout, ok.stderr
    other = verify(signing.Trust(signing.generate()[0]).public_hex)
    assert other.returncode != 0 and "does not verify: unknown key" in other.stderr
    unset = verify("")
    assert unset.returncode != 0 and "no key to check it: set EDGEOPS_TRUSTED_KEYS" in unset.stderr
