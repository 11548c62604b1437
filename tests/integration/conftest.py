"""Fixtures for tests that talk to the real stack: MinIO, the sshd devices, an Airflow metadata DB."""

from __future__ import annotations

import json

import pytest


@pytest.fixture
def airflow_connections(stack_env, monkeypatch) -> dict:
    """Expose the stack's connections to Airflow the way a deployment would: AIRFLOW_CONN_* variables."""
    for conn_id, conn in stack_env["connections"].items():
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
    return stack_env["connections"]
