"""The collect DAG: hourly, no catchup, one mapped collect task per device of the inventory, in the device pool."""

from __future__ import annotations

from pathlib import Path

from tasks.core.names import COLLECT_DAG_ID, DEVICE_POOL

DAG_FILE = Path(__file__).resolve().parents[2] / "dags" / "edgeops_collect.py"


def _dag():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAG_FILE))
    assert bag.import_errors == {}
    return bag.dags[COLLECT_DAG_ID]


def test_hourly_one_mapped_task_per_device():
    from airflow.sdk.definitions.mappedoperator import MappedOperator

    dag = _dag()
    assert dag.catchup is False and dag.max_active_runs == 1 and dag.schedule == "@hourly"
    assert set(dag.task_dict) == {"devices", "collect", "drift"}
    collect = dag.task_dict["collect"]
    assert isinstance(collect, MappedOperator) and collect.pool == DEVICE_POOL
    assert collect.upstream_task_ids == {"devices"}
    assert collect.retries >= 1 and collect.execution_timeout is not None
    assert [link.name for link in collect.operator_extra_links] == ["Device record"]


def test_drift_ends_the_dag_and_emits_through_the_alias():
    from airflow.sdk import Asset, AssetAlias

    from tasks.core.names import DRIFT_ALIAS, DRIFT_ASSET

    drift = _dag().task_dict["drift"]
    assert drift.upstream_task_ids == {"collect"} and drift.trigger_rule == "all_done"  # after failed devices too
    assert [(type(o), o.name) for o in drift.outlets] == [(AssetAlias, DRIFT_ALIAS)]
    assert [(type(i), i.name) for i in drift.inlets] == [(Asset, DRIFT_ASSET)]  # declares the asset


def test_targets_are_the_inventory_devices_with_their_own_connections(tmp_path, monkeypatch):
    import json

    from edgeops_airflow.collect import collect_targets

    fleet = {"groups": {"g": {"budgets": {"p95_latency_ms": 50, "peak_rss_mb": 300, "accuracy_tolerance": 0.1}}},
             "devices": [{"name": "pi1", "group": "g", "wave": 0},
                         {"name": "garage", "group": "g", "wave": 0, "connection": "my_pi", "optional": True}]}
    (tmp_path / "fleet.json").write_text(json.dumps(fleet))
    monkeypatch.setenv("EDGEOPS_FLEET", str(tmp_path / "fleet.json"))
    targets = collect_targets()
    assert [(t["name"], t["connection"], t["optional"]) for t in targets] == [
        ("pi1", "edgeops_device_pi1", False), ("garage", "my_pi", True)]
