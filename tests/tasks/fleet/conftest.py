"""Fleet fixtures: a private, versioned bucket per test (the shared ``rollouts/`` and ``devices/`` keys of the
artifacts bucket are never written), records built from the real record types."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

BUDGETS = {"p95_latency_ms": 20.0, "peak_rss_mb": 200.0, "accuracy_tolerance": 0.02}
FLEET = {"groups": {"pi4": {"threads": 4, "budgets": BUDGETS}, "pi5": {"budgets": BUDGETS}},
         "devices": [{"name": "kitchen", "group": "pi4", "wave": 0}, {"name": "garage", "group": "pi4", "wave": 1},
                     {"name": "attic", "group": "pi5", "wave": 1}, {"name": "porch", "group": "pi5", "wave": 2},
                     {"name": "cellar", "group": "pi5", "wave": 2}]}


@pytest.fixture
def fleet_file(tmp_path: Path) -> Path:
    path = tmp_path / "fleet.json"
    path.write_text(json.dumps(FLEET))
    return path


@pytest.fixture
def fleet_store(admin_s3):
    """An ArtifactStore on a fresh versioned bucket (MinIO root user), removed with every version after."""
    from tasks.core.storage import ArtifactStore

    bucket = f"test-fleet-{uuid.uuid4().hex[:12]}"
    admin_s3.create_bucket(Bucket=bucket)
    admin_s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    try:
        yield ArtifactStore(admin_s3, bucket)
    finally:
        pages = admin_s3.get_paginator("list_object_versions").paginate(Bucket=bucket)
        for page in pages:
            for v in page.get("Versions", []) + page.get("DeleteMarkers", []):
                admin_s3.delete_object(Bucket=bucket, Key=v["Key"], VersionId=v["VersionId"])
        admin_s3.delete_bucket(Bucket=bucket)


@pytest.fixture
def store_env(fleet_store, stack_env, monkeypatch):
    """The CLI's environment pointed at the private bucket (ArtifactStore.from_env)."""
    monkeypatch.setenv("EDGEOPS_S3_ENDPOINT", stack_env["s3"]["endpoint"])
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", stack_env["s3_admin"]["access_key"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", stack_env["s3_admin"]["secret_key"])
    monkeypatch.setenv("EDGEOPS_ARTIFACTS_BUCKET", fleet_store.bucket)
    return fleet_store
