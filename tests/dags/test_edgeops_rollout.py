"""The rollout DAG's grid: plan, three task groups, record; the extra links on the tasks users open."""

from __future__ import annotations

from pathlib import Path

DAG_FILE = Path(__file__).resolve().parents[2] / "dags" / "edgeops_rollout.py"


def _dag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAG_FILE)).dags["edgeops_rollout"]


def test_the_grid_shows_plan_three_groups_and_record():
    dag = _dag()
    assert set(dag.task_group.children) == {"plan", "canary", "waves", "rollback", "record"}
    assert set(dag.task_group.children["canary"].children) == {
        "canary.targets", "canary.deploy", "canary.deployed", "canary.benchmark", "canary.traffic", "canary.gate",
        "canary.promotions", "canary.promote", "canary.switch_backs", "canary.switch_back"}
    assert set(dag.task_group.children["waves"].children) == {
        "waves.targets", "waves.deploy", "waves.deployed", "waves.benchmark"}


def test_extra_links_on_device_tasks_and_record():
    dag = _dag()
    for task_id in ("canary.deploy", "canary.benchmark", "canary.promote", "canary.switch_back", "waves.deploy",
                    "waves.benchmark", "rollback.switch"):
        assert [link.name for link in dag.task_dict[task_id].operator_extra_links] == ["Device record"], task_id
    assert [link.name for link in dag.task_dict["record"].operator_extra_links] == ["Rollout report"]
