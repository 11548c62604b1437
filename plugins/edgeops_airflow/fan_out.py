"""``fan_out(record, field)``: the list a mapped task expands over, as a task of its own.

Airflow maps only over a task's return value (``expand`` refuses ``xcom["key"]`` with "cannot map over XCom
with custom key"), while the lists to map over live inside records (the run plan's modes, the gate
verdict's devices). This one generic task returns ``record[field]`` unchanged; it holds no logic.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import task


@task(retries=0, execution_timeout=timedelta(minutes=2))
def fan_out(record: dict[str, Any], field: str) -> list[Any]:
    """``record[field]`` as this task's return value, so a downstream task can ``expand`` over it."""
    return list(record[field])
