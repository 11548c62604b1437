"""Fixtures for tests that talk to the real stack: MinIO, the sshd devices, an Airflow metadata DB."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A migrated SQLite metadata DB under AIRFLOW_HOME (set in tests/conftest.py), reused across sessions."""
    home = Path(os.environ["AIRFLOW_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    airflow = Path(sys.executable).with_name("airflow")
    subprocess.run([str(airflow), "db", "migrate"], check=True, capture_output=True, timeout=600)
    return home


@pytest.fixture
def airflow_connections(stack_env, monkeypatch) -> dict:
    """Expose the stack's connections to Airflow the way a deployment would: AIRFLOW_CONN_* variables."""
    for conn_id, conn in stack_env["connections"].items():
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
    return stack_env["connections"]


@pytest.fixture(scope="session")
def digits(stack_env, artifact_store) -> str:
    from tasks.seed_data import seed_digits

    uri = f"s3://{stack_env['s3']['datasets_bucket']}/digits"
    seed_digits(artifact_store, uri)
    return uri
