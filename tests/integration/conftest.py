"""Fixtures for tests that talk to the real stack: MinIO, the sshd devices, an Airflow metadata DB."""

from __future__ import annotations

import pytest

from tests.helpers import export_connections


@pytest.fixture
def airflow_connections(stack_env, monkeypatch) -> dict:
    """Expose the stack's connections to Airflow the way a deployment would: AIRFLOW_CONN_* variables."""
    export_connections(monkeypatch, stack_env["connections"])
    return stack_env["connections"]


@pytest.fixture(scope="session")
def nightly_run(request):
    """One tiny nightly run (blessed) for the session: the nightly tests read it, the rollout tests ship it."""
    from airflow.dag_processing.dagbag import DagBag

    from tests.conftest import REPO

    stack_env = request.getfixturevalue("stack_env")
    request.getfixturevalue("airflow_db")
    request.getfixturevalue("digits")
    mp = pytest.MonkeyPatch()
    export_connections(mp, stack_env["connections"])
    try:
        dag_file = REPO / "dags" / "edgeops_nightly.py"
        return DagBag(dag_folder=str(dag_file)).dags["edgeops_nightly"].test(run_conf={"profile": "tiny"})
    finally:
        mp.undo()
