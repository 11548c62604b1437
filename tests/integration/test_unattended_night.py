"""A transient fault at the start of resolve_config and of train is retried and the night succeeds; a
ConfigError fails on its first try (real MinIO, Airflow's dag.test with its retry delays, tiny profile). Each
night's notice reaches a loopback webhook through the edgeops_notify connection: the unblessed run with the
gate's reasons, the failed night with the ConfigError."""

from __future__ import annotations

import pytest

from tests.conftest import REPO
from tests.plugins.receivers import webhook

pytestmark = pytest.mark.integration


def _dag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO / "dags" / "edgeops_nightly.py")).dags["edgeops_nightly"]


def _tries(dag_run) -> dict[str, tuple[str, int]]:
    return {ti.task_id: (str(ti.state), ti.try_number) for ti in dag_run.get_task_instances() if ti.map_index < 1}


def test_transient_faults_are_retried_and_the_night_succeeds(stack_env, airflow_db, airflow_connections, digits,
                                                             tmp_path, monkeypatch):
    from edgeops_airflow.reliability import ENV_FAULT_DIR

    monkeypatch.setenv(ENV_FAULT_DIR, str(tmp_path))
    for task_id in ("resolve_config", "train"):
        (tmp_path / task_id).touch()  # each fails its first try once, as a ReadTimeout to the API server would
    with webhook() as (url, received):
        monkeypatch.setenv("AIRFLOW_CONN_EDGEOPS_NOTIFY", url)
        # a floor no tiny model reaches: the night completes, but nothing is blessed, and a person is told why
        dag_run = _dag().test(run_conf={"profile": "tiny", "min_accuracy": 0.999})
    tries = _tries(dag_run)
    assert "success" in str(dag_run.state).lower(), tries
    assert tries["resolve_config"] == ("success", 2) and tries["train"] == ("success", 2), tries
    assert tries["announce"][0] == "skipped", tries
    assert not list(tmp_path.iterdir())  # both faults fired
    [notice] = received
    assert notice["event"] == "not_blessed" and any("0.999" in r or "99.9" in r for r in notice["reasons"]), notice
    assert notice["links"]["run"].endswith(dag_run.run_id.replace(":", "%3A").replace("+", "%2B"))
    assert notice["links"]["report"].startswith("s3://artifacts/runs/")


def test_config_error_fails_on_its_first_try(stack_env, airflow_db, airflow_connections, monkeypatch):
    with webhook() as (url, received):
        monkeypatch.setenv("AIRFLOW_CONN_EDGEOPS_NOTIFY", url)
        dag_run = _dag().test(run_conf={"profile": "tiny", "modes": ["int8"]})  # fp32 is required: ConfigError
    tries = _tries(dag_run)
    assert "failed" in str(dag_run.state).lower()
    assert tries["resolve_config"] == ("failed", 1), tries
    [notice] = received
    assert notice["event"] == "nightly_failed" and "resolve_config" in notice["title"]
    assert "ConfigError" in notice["reasons"][0] and "fp32" in notice["reasons"][0], notice
