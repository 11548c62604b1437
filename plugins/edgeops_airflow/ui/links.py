"""Extra links on the edgeops tasks (Airflow's task view: buttons beside the logs), persisted in XCom.

They follow the amazon provider's ``BaseAwsLink``: the task calls ``persist`` (an XCom under the link's
``key`` with the values its URL needs) while it runs, where the connection and the config are at hand;
``get_link`` only formats them. At the end of the task Airflow calls ``get_link`` in the worker and stores the
URL under ``_link_<class>``, which the REST API's extra-links endpoint returns.

Where they point:

* **Report**, **Device record**, **Rollout report**: ``/edgeops/object/<key>`` on the Fleet app
  (``fleet_app.py``), which checks the user's Airflow login and redirects to a fresh presigned URL of the
  object. A presigned URL stored in XCom would expire after 7 days; this link does not.
* **Artifacts**: the run's folder in the MinIO console. Its address is the ``console_url`` of the store's
  Airflow connection (extra); without one the task logs why and the link stays empty.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar
from urllib.parse import quote, urlparse

from airflow.sdk import BaseOperatorLink

from tasks.core import keys

log = logging.getLogger(__name__)
APP_PREFIX = "/edgeops"  # where the plugin mounts the Fleet app in the api-server
CONSOLE_URL_EXTRA = "console_url"  # the store connection's extra naming the MinIO console


def airflow_root() -> str:
    """The path the api-server is served under (of ``[api] base_url``; "" at the root). The links keep no host:
    the UI resolves them against the address the user reached it on (a proxy, another port)."""
    from airflow.configuration import conf

    return urlparse(conf.get("api", "base_url", fallback="") or "").path.rstrip("/")


def object_path(key: str) -> str:
    """The Fleet app's authenticated redirect to one object of the artifacts bucket (path on the api-server)."""
    return f"{APP_PREFIX}/object/{quote(key)}"


def object_url(key: str) -> str:
    return f"{airflow_root()}{object_path(key)}"


def report_url(run_id: str) -> str:
    """The run's report served with its "Rolled out" section (the Fleet app's ``/report/<run_id>``)."""
    return f"{airflow_root()}{APP_PREFIX}/report/{quote(run_id)}"


def console_folder_url(conn_id: str, bucket: str, prefix: str) -> str:
    """The MinIO console's browser at ``prefix`` of ``bucket``; empty when the connection names no console."""
    from airflow.sdk import BaseHook

    extra = BaseHook.get_connection(conn_id).extra_dejson
    if CONSOLE_URL_EXTRA not in extra:
        log.warning("connection %s has no extra %r: no MinIO console link", conn_id, CONSOLE_URL_EXTRA)
        return ""
    return f"{str(extra[CONSOLE_URL_EXTRA]).rstrip('/')}/browser/{bucket}/{quote(prefix, safe='')}"


class XComLink(BaseOperatorLink):
    """A link whose URL the task persisted: ``persist(context, operator, url=...)``, then ``get_link``."""

    name: ClassVar[str]
    key: ClassVar[str]

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        from airflow.sdk.execution_time.xcom import XCom

        try:
            value = XCom.get_value(key=self.key, ti_key=ti_key)
        except Exception:  # noqa: BLE001 - a link must never fail a task (BaseAwsLink's return_on_error)
            log.exception("link %s: no XCom %s", self.name, self.key)
            return ""
        return str(value["url"]) if isinstance(value, dict) and "url" in value else ""

    @classmethod
    def persist(cls, context: Any, url: str) -> None:
        """Store the link's URL in the task's XCom (an empty URL stores nothing: the button stays disabled)."""
        try:
            if url:
                context["ti"].xcom_push(key=cls.key, value={"url": url})
        except Exception:  # noqa: BLE001 - as above: never fail the task for a link
            log.exception("link %s: could not persist %s", cls.name, url)


class ReportLink(XComLink):
    name = "Report"
    key = "edgeops_report"


class ArtifactsLink(XComLink):
    name = "Artifacts"
    key = "edgeops_artifacts"


class DeviceRecordLink(XComLink):
    name = "Device record"
    key = "edgeops_device_record"


class RolloutReportLink(XComLink):
    name = "Rollout report"
    key = "edgeops_rollout_report"


def persist_run_links(context: Any, run_id: str, conn_id: str, bucket: str) -> None:
    """Report + Artifacts of a nightly run (``run_id`` is its key in the store)."""
    ReportLink.persist(context, report_url(run_id))
    try:
        ArtifactsLink.persist(context, console_folder_url(conn_id, bucket, keys.run_prefix(run_id)))
    except Exception:  # noqa: BLE001 - a missing connection fails the step itself, not its link
        log.exception("link Artifacts: no console URL from connection %s", conn_id)


def persist_device_link(context: Any, device: str) -> None:
    DeviceRecordLink.persist(context, object_url(keys.device_state(device)))


def persist_rollout_link(context: Any, rollout_id: str) -> None:
    RolloutReportLink.persist(context, object_url(keys.rollout_report(rollout_id)))


STEP_LINKS = (ReportLink(), ArtifactsLink())
DEVICE_LINKS = (DeviceRecordLink(),)
ROLLOUT_LINKS = (RolloutReportLink(),)
ALL_LINKS = (*STEP_LINKS, *DEVICE_LINKS, *ROLLOUT_LINKS)
