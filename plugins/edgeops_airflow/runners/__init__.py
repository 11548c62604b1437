"""Execution backends for ``edgeops step``: an explicit registry of small ``Runner`` classes.

Each backend lives in ``<name>_runner.py`` (named so none shadows a real package such as ``docker``) and is
imported only when chosen, so a worker without the docker or kubernetes provider can still run ``local``.
The registry's names are exactly ``tasks.core.config.RUNNERS`` (a test checks it).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from edgeops_airflow.runners.common import StepRequest


class Runner(Protocol):
    def __init__(self, request: StepRequest) -> None: ...

    def run(self, context: Any) -> dict[str, Any]:
        """Run the step to completion and return its JSON result (raise AirflowException on failure)."""

    def kill(self) -> None:
        """Stop the step (Airflow's on_kill): nothing it started may keep running."""


REGISTRY: dict[str, str] = {
    "local": "edgeops_airflow.runners.local_runner:LocalRunner",
    "docker": "edgeops_airflow.runners.docker_runner:DockerRunner",
    "kubernetes": "edgeops_airflow.runners.kubernetes_runner:KubernetesRunner",
}


def runner_for(request: StepRequest) -> Runner:
    module, _, cls = REGISTRY[request.config.execution.runner].partition(":")
    return getattr(importlib.import_module(module), cls)(request)
