"""The nightly DAG's shape, schedule and Params."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def dag():
    from airflow.dag_processing.dagbag import DagBag

    from tests.dags.test_dagbag import DAG_FILES

    bag = DagBag(dag_folder=str([f for f in DAG_FILES if f.name == "edgeops_nightly.py"][0]))
    return bag.dags["edgeops_nightly"]


def test_schedule_and_defaults(dag):
    cron = dag.timetable.timetable  # AssetOrTimeSchedule: 02:00 UTC or new data (tests/plugins/test_triggers.py)
    assert cron.expression == "0 2 * * *" and str(cron.timezone) == "UTC"
    [watcher] = dag.timetable.asset_condition.watchers
    assert watcher.trigger.serialize()[0] == "edgeops_airflow.triggers.MinioNewObjectsTrigger"
    assert dag.catchup is False
    train = dag.get_task("train")
    assert train.retries == 2 and train.retry_exponential_backoff


def test_pipeline_order(dag):
    order = ["resolve_config", "train", "quantize", "evaluate", "gate", "publish", "announce"]
    for upstream, downstream in zip(order, order[1:], strict=False):
        assert upstream in dag.get_task(downstream).upstream_task_ids or any(
            upstream in dag.get_task(t).upstream_task_ids for t in dag.get_task(downstream).upstream_task_ids
        ), f"{upstream} must run before {downstream}"


def test_announce_emits_the_blessed_model_asset_the_rollout_is_scheduled_on(dag):
    from airflow.dag_processing.dagbag import DagBag

    from tests.dags.test_dagbag import DAG_FILES

    [outlet] = dag.get_task("announce").outlets
    rollout = DagBag(dag_folder=str([f for f in DAG_FILES if f.name == "edgeops_rollout.py"][0])).dags[
        "edgeops_rollout"]
    assert outlet.name == "edgeops_blessed_model"
    assert [a.name for a in rollout.timetable.asset_condition.objects] == [outlet.name]
    assert "deploy" not in dag.task_ids  # devices are the rollout DAG's


def test_every_param_is_typed(dag):
    for name, param in dag.params.items():
        assert "type" in param.schema, name


def test_steps_link_the_report_and_the_artifacts(dag):
    steps = [t for t in dag.tasks if type(t).__name__ == "StepOperator" or t.task_id == "quantize"]
    assert {t.task_id for t in steps} >= {"train", "quantize", "evaluate", "gate", "publish"}
    for t in steps:
        assert [link.name for link in t.operator_extra_links] == ["Report", "Artifacts"], t.task_id
