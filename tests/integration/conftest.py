"""Fixtures for tests that talk to the real stack: MinIO, the sshd devices, an Airflow metadata DB."""

from __future__ import annotations

import pytest

from tests.helpers import export_connections


@pytest.fixture
def airflow_connections(stack_env, monkeypatch) -> dict:
    """Expose the stack's connections to Airflow the way a deployment would: AIRFLOW_CONN_* variables."""
    export_connections(monkeypatch, stack_env["connections"])
    return stack_env["connections"]
