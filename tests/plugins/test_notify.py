"""Notices reach a real local receiver through the edgeops_notify connection: a webhook, or mail over SMTP."""

from __future__ import annotations

import json

import pytest

from tests.plugins.receivers import smtp_server, webhook


def _notice():
    from edgeops_airflow.notify import Notice

    return Notice("rollout_failed", "rollout r1 failed in record",
                  ("canary pi1 failed: p95 latency 41.0 ms > budget 30.0 ms", "canaries switched back"),
                  {"run": "http://127.0.0.1:8080/dags/edgeops_rollout/runs/r1",
                   "record": "s3://artifacts/rollouts/r1/record.json"})


def test_webhook_gets_the_reasons_and_links(monkeypatch):
    from edgeops_airflow.notify import deliver

    with webhook() as (url, received):
        monkeypatch.setenv("AIRFLOW_CONN_EDGEOPS_NOTIFY", url)
        assert deliver(_notice())
    [body] = received
    assert body["event"] == "rollout_failed" and "p95 latency 41.0 ms" in body["text"]
    assert body["links"]["record"] in body["text"] and body["reasons"][1] == "canaries switched back"


def test_mail_through_an_smtp_connection(monkeypatch):
    from edgeops_airflow.notify import deliver

    with smtp_server() as (port, received):
        conn = {"conn_type": "smtp", "host": "127.0.0.1", "port": port,
                "extra": {"to": "oncall@example.org, ml@example.org", "from_email": "edgeops@example.org",
                          "disable_ssl": True, "disable_tls": True}}
        monkeypatch.setenv("AIRFLOW_CONN_EDGEOPS_NOTIFY", json.dumps(conn))
        assert deliver(_notice())
    [(sender, to, data)] = received
    assert sender == "edgeops@example.org" and to == ["oncall@example.org", "ml@example.org"]
    from email import message_from_string

    mail = message_from_string(data)
    body = "".join(part.get_payload(decode=True).decode() for part in mail.walk() if not part.is_multipart())
    assert mail["Subject"] == "[edgeops] rollout r1 failed in record"
    assert "p95 latency 41.0 ms" in body and "s3://artifacts/rollouts/r1/record.json" in body


def test_no_connection_or_a_dead_receiver_never_raises(monkeypatch):
    from edgeops_airflow.notify import deliver

    monkeypatch.delenv("AIRFLOW_CONN_EDGEOPS_NOTIFY", raising=False)
    assert deliver(_notice(), conn_id="edgeops_notify_missing") is False
    monkeypatch.setenv("AIRFLOW_CONN_EDGEOPS_NOTIFY", "http://127.0.0.1:9/hook")
    assert deliver(_notice()) is False


def test_deadline_is_configurable_and_checked(monkeypatch):
    from datetime import timedelta

    from edgeops_airflow.notify import ENV_DEADLINE_HOURS, nightly_deadline

    monkeypatch.setenv(ENV_DEADLINE_HOURS, "2.5")
    assert nightly_deadline() == timedelta(hours=2.5)
    monkeypatch.setenv(ENV_DEADLINE_HOURS, "0")
    assert nightly_deadline() is None
    monkeypatch.setenv(ENV_DEADLINE_HOURS, "soon")
    with pytest.raises(ValueError, match="a number >= 0"):
        nightly_deadline()


def test_deadline_callback_posts(monkeypatch):
    from edgeops_airflow.notify import deadline_missed

    from tests.helpers import run_coroutine

    ctx = {"dag_run": {"dag_id": "edgeops_nightly", "dag_run_id": "scheduled__2026-12-02T02:00:00+00:00",
                       "state": "running", "queued_at": "2026-12-02T02:00:05Z"},
           "deadline": {"deadline_time": "2026-12-02T08:00:05Z"}}
    with webhook() as (url, received):
        monkeypatch.setenv("AIRFLOW_CONN_EDGEOPS_NOTIFY", url)
        run_coroutine(deadline_missed(context=ctx))
    [body] = received
    assert body["event"] == "deadline_missed" and "2026-12-02T08:00:05Z" in body["title"]
    assert "/dags/edgeops_nightly/runs/scheduled__2026-12-02T02%3A00%3A00%2B00%3A00" in body["links"]["run"]


def test_stale_device_notice_only_past_the_threshold():
    import datetime as dt

    from edgeops_airflow.fleet_watch import stale_notices

    from tasks.fleet.status import DeviceStatus

    now = dt.datetime(2026, 12, 2, 12, tzinfo=dt.UTC)
    rows = [DeviceStatus("pi2", "x86_sim", 1, "stale", release="r0.fp32", reason="rollout ro1 marked it failed",
                         last_rollout="ro1"),
            DeviceStatus("pi3", "x86_sim", 1, "stale", last_rollout="ro2"),
            DeviceStatus("pi1", "x86_sim", 0, "ok", last_rollout="ro1")]
    ended = {"ro1": "2026-12-01T02:00:00+00:00", "ro2": "2026-12-02T10:00:00+00:00"}
    [notice] = stale_notices(rows, ended, 24, now)
    assert notice.event == "device_stale" and notice.title.startswith("device pi2 stale for 34 h")
    assert notice.reasons[0] == "rollout ro1 marked it failed"
    assert notice.links["record"] == "s3://artifacts/rollouts/ro1/record.json"
