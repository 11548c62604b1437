"""What keeps a night from being lost: the stacks start the scheduler after the api-server is healthy, the task
client is patient on 2 cores, missed and overlapping nights are decided, a late night has a deadline."""

from __future__ import annotations

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def _nightly():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO / "dags" / "edgeops_nightly.py")).dags["edgeops_nightly"]


def test_compose_schedules_only_after_the_api_server_is_healthy():
    services = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    for name in ("airflow-scheduler", "airflow-triggerer"):
        assert services[name]["depends_on"]["airflow-apiserver"] == {"condition": "service_healthy"}, name
        assert services[name]["depends_on"]["airflow-init"] == {"condition": "service_completed_successfully"}
    env = services["airflow-scheduler"]["environment"]
    assert float(env["AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT"]) >= 30


def test_devstack_starts_the_scheduler_after_the_api_server_with_a_patient_task_client():
    from scripts.devstack import airflow

    assert set(airflow.AFTER_API) == {"scheduler", "triggerer"} and "api-server" not in airflow.AFTER_API
    for key, value in airflow.EXECUTION_API_CLIENT.items():
        assert key.startswith("AIRFLOW__WORKERS__EXECUTION_API_") and float(value) > 0
    assert float(airflow.EXECUTION_API_CLIENT["AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT"]) >= 30


def test_missed_and_overlapping_nights():
    """Stack down at 02:00: catchup=False creates the one newest missed tick when the scheduler starts (not one
    per missed night). A night still running at the next 02:00: max_active_runs=1 queues the next behind it."""
    from datetime import UTC, datetime, timedelta

    from airflow.timetables.base import DataInterval, TimeRestriction

    dag = _nightly()
    assert dag.catchup is False and dag.max_active_runs == 1
    now = datetime.now(UTC)
    newest_tick = now.replace(hour=2, minute=0, second=0, microsecond=0)
    if newest_tick > now:
        newest_tick -= timedelta(days=1)
    last = DataInterval.exact(newest_tick - timedelta(days=3))  # the stack missed the last two nights
    from airflow.timetables.trigger import CronTriggerTimetable  # the scheduler's side of the DAG's timetable

    cron = dag.timetable.timetable
    nxt = CronTriggerTimetable(cron.expression, timezone="UTC").next_dagrun_info(
        last_automated_data_interval=last, restriction=TimeRestriction(earliest=None, latest=None, catchup=False))
    assert nxt is not None and nxt.run_after == newest_tick  # one run, for the newest missed 02:00


def test_nightly_has_a_deadline_that_notifies(monkeypatch):
    from edgeops_airflow.notify import ENV_DEADLINE_HOURS

    monkeypatch.setenv(ENV_DEADLINE_HOURS, "6")
    [alert] = _nightly().deadline
    assert alert.interval.total_seconds() == 6 * 3600
    assert alert.callback.path == "edgeops_airflow.notify.deadline_missed"


def test_the_nightly_cron_is_one_knob_and_a_bad_one_says_what_to_fix(monkeypatch):
    import pytest
    from edgeops_airflow.new_data import nightly_cron

    from tasks.core import names
    from tasks.core.exceptions import ConfigError

    monkeypatch.delenv(names.ENV_NIGHTLY_CRON, raising=False)
    assert nightly_cron() == names.DEFAULT_NIGHTLY_CRON == "0 2 * * *"
    monkeypatch.setenv(names.ENV_NIGHTLY_CRON, "*/5 * * * *")
    assert _nightly().timetable.timetable.expression == "*/5 * * * *"
    for bad in ("at 2am", "0 2 * *", "0 25 * * *"):
        monkeypatch.setenv(names.ENV_NIGHTLY_CRON, bad)
        with pytest.raises(ConfigError, match=names.ENV_NIGHTLY_CRON):
            nightly_cron()
