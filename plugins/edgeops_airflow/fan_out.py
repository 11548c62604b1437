"""``fan_out(record, field)`` and ``succeeded(results)``: the lists mapped tasks expand over, as tasks.

Airflow maps only over a task's return value (``expand`` refuses ``xcom["key"]`` with "cannot map over XCom
with custom key"), while the lists to map over live inside records (the run plan's modes, the gate
verdict's devices). This one generic task returns ``record[field]`` unchanged; it holds no logic.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import task

from edgeops_airflow.reliability import ALL_DONE_RETRIES, PLUMBING_RETRIES


@task(execution_timeout=timedelta(minutes=2), trigger_rule="all_done", **ALL_DONE_RETRIES)
def succeeded(results: Any) -> list[Any]:
    """The outputs of a mapped task's instances that succeeded (failed ones pushed nothing). A task expanded
    directly over a mapped task is upstream_failed as a whole when one instance fails; expanding over this
    list lets the devices that did deploy still be benchmarked."""
    return [r for r in list(results or []) if r and not r.get("app_failure")]  # failed activate/health: not benched


@task(execution_timeout=timedelta(minutes=2), **PLUMBING_RETRIES)
def fan_out(record: dict[str, Any], field: str) -> list[Any]:
    """``record[field]`` as this task's return value, so a downstream task can ``expand`` over it."""
    return list(record[field])
