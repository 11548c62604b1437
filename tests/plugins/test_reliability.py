"""Transient errors are retried, fatal ones fail at once: the policy, and the DAGs' plumbing tasks use it."""

from __future__ import annotations

import pytest

from tasks.core.exceptions import ConfigError, StorageError


def test_fatal_error_becomes_a_final_failure():
    from airflow.sdk.exceptions import AirflowFailException
    from edgeops_airflow.reliability import fatal_is_final

    with pytest.raises(AirflowFailException, match="ConfigError: bad epochs"), fatal_is_final():
        raise ConfigError("bad epochs")


def test_transient_error_propagates_for_a_retry():
    from edgeops_airflow.reliability import fatal_is_final

    with pytest.raises(StorageError), fatal_is_final():
        raise StorageError("MinIO unreachable")


def test_fault_point_fails_once_only_when_asked(tmp_path, monkeypatch):
    from edgeops_airflow.reliability import ENV_FAULT_DIR, InjectedTransientError, fault_point

    fault_point("resolve_config")  # no env: nothing
    monkeypatch.setenv(ENV_FAULT_DIR, str(tmp_path))
    fault_point("resolve_config")  # no marker: nothing
    (tmp_path / "resolve_config").touch()
    with pytest.raises(InjectedTransientError):
        fault_point("resolve_config")
    fault_point("resolve_config")  # consumed: the retry passes


@pytest.mark.parametrize("dag_id", ["edgeops_nightly", "edgeops_rollout"])
def test_every_task_retries(dag_id):
    """No task has retries=0: every failure that is not fatal gets another try (fatal ones fail via
    AirflowFailException, which Airflow never retries)."""
    from airflow.dag_processing.dagbag import DagBag

    from tests.dags.test_dagbag import DAG_FILES

    dag = DagBag(dag_folder=str(next(f for f in DAG_FILES if f.stem == dag_id))).dags[dag_id]
    assert {t.task_id for t in dag.tasks if not t.retries} == set()
