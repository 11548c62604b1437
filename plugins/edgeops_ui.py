"""The edgeops Airflow plugin: extra links on the edgeops tasks, and the Fleet page in the UI's navigation.

Airflow's plugin manager imports this file from the plugins folder (``edgeops_airflow/`` itself is in
``.airflowignore``: it is an ordinary package). Keep the plugin class here only: every module that holds the
class is loaded as one more plugin.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin
from edgeops_airflow.ui.fleet_app import FLEET_PATH, app
from edgeops_airflow.ui.links import ALL_LINKS, APP_PREFIX

FLEET_URL = f"{APP_PREFIX}{FLEET_PATH}"


class EdgeOpsPlugin(AirflowPlugin):
    name = "edgeops"
    operator_extra_links = list(ALL_LINKS)
    fastapi_apps = [{"app": app, "url_prefix": APP_PREFIX, "name": "edgeops fleet"}]
    external_views = [
        {"name": "Fleet", "href": FLEET_URL, "url_route": "edgeops-fleet", "destination": "nav",
         "category": "browse"},
        {"name": "Fleet", "href": FLEET_URL, "url_route": "edgeops-fleet-run", "destination": "dag_run"},
    ]
