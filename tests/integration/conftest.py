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

    request.getfixturevalue("stack_env")
    request.getfixturevalue("airflow_db")
    request.getfixturevalue("digits")
    mp = pytest.MonkeyPatch()
    export_connections(mp, request.getfixturevalue("ui_connections"))  # the store's names the MinIO console
    try:
        dag_file = REPO / "dags" / "edgeops_nightly.py"
        return DagBag(dag_folder=str(dag_file)).dags["edgeops_nightly"].test(run_conf={"profile": "tiny"})
    finally:
        mp.undo()


@pytest.fixture(scope="session")
def ui_connections(stack_env) -> dict:
    """The stack's connections, the store's as ``scripts.devstack`` writes it now (with the console URL)."""
    from scripts.devstack.common import load_stack
    from scripts.devstack.minio import connection
    from tasks.core.names import MINIO_CONN_ID

    minio = {**stack_env["connections"][MINIO_CONN_ID]}
    minio["extra"] = {**minio["extra"], "console_url": connection(load_stack())["extra"]["console_url"]}
    return {**stack_env["connections"], MINIO_CONN_ID: minio}


@pytest.fixture(scope="session")
def airflow_ui(tmp_path_factory, airflow_db, ui_connections):
    """An api-server with auth ON on the tests' metadata DB (tests/integration/airflow_ui.py)."""
    from airflow.configuration import conf

    from tests.conftest import STATE_DIR
    from tests.integration import airflow_ui as ui

    server, proc = ui.start(tmp_path_factory.mktemp("airflow-ui"), conf.get("database", "sql_alchemy_conn"),
                            ui_connections, STATE_DIR / "fleet.json")
    try:
        yield server
    finally:
        ui.stop(proc)


@pytest.fixture(scope="module")
def blessed_run(nightly_run) -> str:
    """The session's tiny nightly run (blessed): the model the rollout tests ship, by its key."""
    from tasks.core.keys import safe_run_id
    from tests.helpers import task_states

    assert "success" in str(nightly_run.state).lower(), task_states(nightly_run)
    return safe_run_id(nightly_run.run_id)
