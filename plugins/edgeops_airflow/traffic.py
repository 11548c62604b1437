"""The rollout's ``canary.traffic`` sensor (``TrafficSensor``, reschedule mode: no worker slot between pokes).

One poke reads the canaries' telemetry and says whether they can be judged.

For every canary of a group with a ``traffic_canary`` (``tasks.fleet.traffic``) that deployed cleanly: collect it
and read its telemetry (``tasks.fleet.traffic_read``), sum the NEW release's figures written since its switch (the
switch time is its ``devices/<name>/state.json``) and the PREVIOUS release's, and judge. The poke is done when
every such canary is ready (``min_requests`` served, or ``max_wait_s`` since its switch); its verdicts are the
sensor's XCom, which the canary gate reads. A rollback, or a rollout whose groups do not enable it, is done at once.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue

from tasks.core import keys
from tasks.core.exceptions import StorageError

log = logging.getLogger(__name__)


def _switched_at(store: Any, device: str, release: str, rollout_id: str) -> dt.datetime:
    """When the canary switched to ``release`` in this rollout (its state record); now when the record is not
    this rollout's switch to it (then the wait starts with this poke: conservative)."""
    from tasks.fleet.records import DeviceState

    try:
        state = DeviceState.from_xcom(store.get_json(keys.device_state(device)))
    except StorageError:
        return dt.datetime.now(dt.UTC)
    if state.release != release or state.rollout_id != rollout_id:
        return dt.datetime.now(dt.UTC)
    return dt.datetime.fromisoformat(state.switched_at)


def watch_traffic(plan_raw: dict[str, Any], deploys: Any) -> tuple[bool, list[dict[str, Any]]]:
    """(done, the TrafficVerdicts as XCom) for this poke."""
    from edgeops_airflow.device_transport import DeviceTransport
    from edgeops_airflow.rollout import _records, _store
    from tasks.core.results import DeployResult
    from tasks.fleet.records import ROLLBACK, RolloutPlan
    from tasks.fleet.telemetry import stamp
    from tasks.fleet.traffic import figures, judge, ready
    from tasks.fleet.traffic_read import read_telemetry

    plan = RolloutPlan.from_xcom(plan_raw)
    if plan.action == ROLLBACK or not plan.traffic:
        return True, []
    deployed = {d.device: d for d in _records(DeployResult, deploys)}
    store, now = _store(), dt.datetime.now(dt.UTC)
    done, verdicts = True, []
    for t in plan.canary:
        d = deployed.get(t.device)
        settings = plan.traffic.get(t.group)
        if settings is None or d is None or d.app_failure:
            continue
        since = _switched_at(store, t.device, d.release, plan.rollout_id)
        with DeviceTransport(t.device, t.connection) as transport:
            docs = read_telemetry(transport, store, (d.release, d.previous or ""))
        new = figures(d.release, docs[d.release], stamp(since))
        old = figures(d.previous, docs[d.previous]) if d.previous and d.previous != d.release else None
        waited = (now - since).total_seconds()
        verdict = judge(settings, t.device, t.group, d.release, d.previous, new, old, waited)
        ok = ready(settings, new, waited)
        log.info("%s: %s of %s requests of %s after %.0f s (max %g s): %s", t.device, new.requests,
                 settings.min_requests, d.release, waited, settings.max_wait_s,
                 f"{verdict.status}: {'; '.join(verdict.reasons)}" if ok else "waiting")
        done = done and ok
        verdicts.append(verdict.to_xcom())
    return done, verdicts


class TrafficSensor(BaseSensorOperator):
    """``plan``: the RolloutPlan; ``deploys``: the canary deploys' DeployResults. Done -> the TrafficVerdicts."""

    template_fields: Sequence[str] = ("plan", "deploys")
    ui_color = "#e8f5e9"

    def __init__(self, *, plan: Any, deploys: Any, **kwargs: Any) -> None:
        kwargs.setdefault("mode", "reschedule")
        super().__init__(**kwargs)
        self.plan, self.deploys = plan, deploys

    def poke(self, context: Any) -> PokeReturnValue:
        done, verdicts = watch_traffic(self.plan, self.deploys)
        return PokeReturnValue(is_done=done, xcom_value=verdicts if done else None)
