"""Tell a person when a night needs them: a notice per event, delivered through the ``edgeops_notify`` connection.

The connection picks the channel, so a team plugs in its own mail or chat without code changes:

* ``smtp`` (the smtp provider's connection: host, port, login, password) with ``extra.to`` (comma-separated
  recipients) and optionally ``extra.from_email``: a mail through ``SmtpHook``;
* ``http`` / ``https`` (e.g. ``https://hooks.slack.com/services/T/B/X``; ``extra.url`` overrides): a JSON POST
  whose ``text`` is the whole message (what Slack, Mattermost, Rocket.Chat and Teams incoming webhooks read), with
  ``event``, ``title``, ``reasons`` and ``links`` beside it for a receiver of your own.

No connection: the notice is logged, not sent. A delivery that fails is logged and never fails the task.
Events: ``nightly_failed``, ``not_blessed`` (with the gate's reasons), ``rollout_failed`` (canary failed or
rolled back: the record's reasons), ``device_stale``, ``deadline_missed``, ``drift`` (a device's release newly
drifts from its test split: the collect DAG's drift task). Links: the run in the Airflow UI and
the report's (or rollout record's) URI.
"""

from __future__ import annotations

import json
import logging
import os
import urllib.request
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from tasks.core import keys, names

NOTIFY_CONN_ID = names.NOTIFY_CONN_ID
ENV_DEADLINE_HOURS = "EDGEOPS_NIGHTLY_DEADLINE_HOURS"
NIGHTLY, ROLLOUT = names.NIGHTLY_DAG_ID, names.ROLLOUT_DAG_ID
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Notice:
    """One message: what happened, why, and where to look."""

    event: str
    title: str
    reasons: tuple[str, ...]
    links: dict[str, str] = field(default_factory=dict)

    def text(self) -> str:
        lines = [f"[edgeops] {self.title}", *(f"- {r}" for r in self.reasons)]
        return "\n".join(lines + [f"{name}: {url}" for name, url in self.links.items()])

    def payload(self) -> dict[str, Any]:
        return {"text": self.text(), "event": self.event, "title": self.title, "reasons": list(self.reasons),
                "links": dict(self.links)}


def _connection(conn_id: str) -> Any | None:
    from airflow.sdk import BaseHook

    try:
        return BaseHook.get_connection(conn_id)
    except Exception:  # noqa: BLE001 - AirflowNotFoundException and friends: no channel configured
        return None


def webhook_url(conn: Any) -> str:
    """``extra.url``, else ``<http|https>://host[:port]/<schema>`` (a URI connection keeps its path in schema)."""
    extra = conn.extra_dejson
    if extra.get("url"):
        return str(extra["url"])
    port = f":{conn.port}" if conn.port else ""
    return f"{conn.conn_type}://{conn.host}{port}/{conn.schema or ''}"


def _post(url: str, notice: Notice) -> None:
    body = json.dumps(notice.payload()).encode()
    req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=15) as resp:  # noqa: S310 - the operator's own connection
        resp.read()


def _mail(conn_id: str, conn: Any, notice: Notice) -> None:
    from html import escape

    from airflow.providers.smtp.hooks.smtp import SmtpHook

    extra = conn.extra_dejson
    to = [a.strip() for a in str(extra.get("to", "")).split(",") if a.strip()]
    if not to:
        raise ValueError(f"connection {conn_id} (smtp) has no extra.to: add the recipients, comma-separated")
    html = "<pre>" + escape(notice.text()) + "</pre>"
    with SmtpHook(smtp_conn_id=conn_id) as hook:
        hook.send_email_smtp(to=to, subject=f"[edgeops] {notice.title}", html_content=html,
                             from_email=extra.get("from_email") or f"edgeops@{conn.host}")


def deliver(notice: Notice, conn_id: str = NOTIFY_CONN_ID) -> bool:
    """Send ``notice`` through the connection; True when sent. Never raises: a notice must not fail a task."""
    conn = _connection(conn_id)
    if conn is None:
        log.warning("no Airflow connection %r: notice not sent: %s", conn_id, notice.text())
        return False
    try:
        if conn.conn_type in ("smtp", "email"):
            _mail(conn_id, conn, notice)
        else:
            _post(webhook_url(conn), notice)
    except Exception:  # noqa: BLE001 - logged with the notice; the task's own outcome stands
        log.exception("notice %s via %s (%s) failed: %s", notice.event, conn_id, conn.conn_type, notice.text())
        return False
    log.info("notice %s sent via %s (%s)", notice.event, conn_id, conn.conn_type)
    return True


def nightly_deadline() -> timedelta | None:
    """How long after it is queued a night must be finished (``$EDGEOPS_NIGHTLY_DEADLINE_HOURS``, default 6;
    0 = no deadline)."""
    raw = os.environ.get(ENV_DEADLINE_HOURS, "6")
    try:
        hours = float(raw)
    except ValueError:
        hours = -1.0
    if hours < 0:
        raise ValueError(f"{ENV_DEADLINE_HOURS}={raw!r}: give the hours a night may take, a number >= 0 (e.g. 6; "
                         "0 = no deadline)")
    return timedelta(hours=hours) if hours else None


def nightly_deadline_alert() -> Any:
    """The nightly's ``DeadlineAlert`` (None when the deadline is off): ``deadline_missed`` notifies."""
    from airflow.sdk.definitions.callback import AsyncCallback
    from airflow.sdk.definitions.deadline import DeadlineAlert, DeadlineReference

    interval = nightly_deadline()
    if interval is None:
        return None
    return DeadlineAlert(reference=DeadlineReference.DAGRUN_QUEUED_AT, interval=interval,
                         callback=AsyncCallback(deadline_missed))


# --- links ---------------------------------------------------------------------------------------------------
def run_url(dag_id: str, run_id: str) -> str:
    from urllib.parse import quote

    from airflow.configuration import conf

    base = conf.get("api", "base_url", fallback="") or "http://localhost:8080"
    return f"{base.rstrip('/')}/dags/{dag_id}/runs/{quote(run_id, safe='')}"


def _links(context: Any) -> dict[str, str]:
    ti, dag_id, run_id = context["ti"], context["dag"].dag_id, context["run_id"]
    links = {"run": run_url(dag_id, run_id)}
    if dag_id == NIGHTLY:
        run_key = ti.xcom_pull(task_ids="resolve_config", key="run_id")
        if run_key:
            links["report"] = f"s3://{names.ARTIFACTS_BUCKET}/{keys.report(str(run_key))}"
    elif dag_id == ROLLOUT:
        rollout_id = ti.xcom_pull(task_ids="plan", key="rollout_id")
        if rollout_id:
            links["record"] = f"s3://{names.ARTIFACTS_BUCKET}/{keys.rollout_record(str(rollout_id))}"
    return links


# --- callbacks the DAGs use ------------------------------------------------------------------------------------
def task_failed(context: Any) -> None:
    """``on_failure_callback`` (final failure only, not a try that will be retried) of both DAGs."""
    dag_id, ti = context["dag"].dag_id, context["ti"]
    event = "rollout_failed" if dag_id == ROLLOUT else "nightly_failed"
    what = "rollout" if dag_id == ROLLOUT else "nightly"
    reason = str(context.get("exception") or "failed")
    deliver(Notice(event, f"{what} {context['run_id']} failed in {ti.task_id}", (reason,), _links(context)))


def announce_skipped(context: Any) -> None:
    """``on_skipped_callback`` of announce: a run that was not blessed (or inconclusive) says why."""
    from tasks.core.verdict import GateVerdict

    raw = context["ti"].xcom_pull(task_ids="gate")
    if not raw:
        return
    verdict = GateVerdict.from_xcom(raw)
    if verdict.blessed:
        return  # blessed but its profile may not ship: nothing for a person to do
    outcome = verdict.outcome or "not_blessed"
    deliver(Notice("not_blessed", f"nightly {context['run_id']}: {outcome}, nothing rolls out",
                   tuple(verdict.reasons) or (outcome,), _links(context)))


async def deadline_missed(context: dict[str, Any] | None = None, **_: Any) -> None:
    """The nightly's ``DeadlineAlert`` callback (runs in the triggerer): the night has not finished in time."""
    from asgiref.sync import sync_to_async

    run = dict((context or {}).get("dag_run") or {})
    deadline = dict((context or {}).get("deadline") or {})
    dag_id, run_id = str(run.get("dag_id", NIGHTLY)), str(run.get("dag_run_id", "?"))
    notice = Notice("deadline_missed", f"nightly {run_id} has not finished by {deadline.get('deadline_time')}",
                    (f"state {run.get('state', 'unknown')}, queued at {run.get('queued_at')}",),
                    {"run": run_url(dag_id, run_id)})
    await sync_to_async(deliver)(notice)
