"""Run one ``edgeops step`` somewhere and hand its JSON result to XCom.

``StepOperator`` owns what every backend shares: the command line, the credentials taken from the Airflow
connection, and the result contract (the step's last JSON line). Where the command runs is chosen per run
from the resolved config (``execution.runner``, a DAG Param), by one small module per backend in
``runners/``: ``local`` (subprocess of the worker), ``docker`` (the docker provider's DockerOperator on the
step image) and ``kubernetes`` (KubernetesPodOperator). Step code is the same for all three.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterable, Sequence
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException

CONFIG_ERROR_EXIT = 2  # tasks.cli exits 2 for config errors: retrying cannot help
RUNNERS = ("local", "docker", "kubernetes")


def plain(value: Any) -> Any:
    """XCom values of mapped tasks arrive as lazy sequences; make them JSON-serialisable."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, Sequence) or hasattr(value, "__iter__"):
        return [plain(v) for v in value]
    return value


def step_command(step: str, run_id: str, config: dict[str, Any], inputs: dict[str, Any]) -> list[str]:
    """Arguments after ``edgeops``: identical for every runner."""
    return ["step", step, "--run-id", run_id, "--config-json", json.dumps(plain(config), sort_keys=True),
            "--inputs", json.dumps(plain(inputs), sort_keys=True)]


def last_json(lines: Iterable[str], step: str) -> dict[str, Any]:
    """The step's result: the last output line that is a JSON object (logs may interleave before it)."""
    for line in reversed([str(x).strip() for x in lines]):
        if line.startswith("{") and line.endswith("}"):
            try:
                result = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(result, dict):
                return result
    raise AirflowException(f"step {step} printed no JSON result line; see the log above")


def failure(step: str, exit_code: int | None, detail: str) -> AirflowException:
    """Config errors never retry; everything else (a killed container, MinIO down) may."""
    if exit_code == CONFIG_ERROR_EXIT:
        return AirflowFailException(f"step {step}: config error (exit 2), not retried:\n{detail}")
    if exit_code == 137:
        detail = f"killed (exit 137): out of memory at the runner's memory limit, or stopped\n{detail}"
    return AirflowException(f"step {step} failed (exit {exit_code}):\n{detail}")


class StepOperator(BaseOperator):
    """``config`` is the resolved config dict (templated XCom); ``inputs`` holds URIs and small values."""

    template_fields: Sequence[str] = ("run_id", "config", "inputs")
    ui_color = "#e8f4ea"

    def __init__(self, *, step: str, run_id: str, config: Any, inputs: Any = None,
                 artifacts_conn_id: str = "edgeops_minio", bucket: str = "artifacts", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.step, self.run_id, self.config, self.inputs = step, run_id, config, inputs or {}
        self.artifacts_conn_id, self.bucket = artifacts_conn_id, bucket
        self._backend: Any = None

    @property
    def runner(self) -> str:
        return str((self.config.get("execution") or {}).get("runner", "local"))

    def command(self) -> list[str]:
        return step_command(self.step, self.run_id, self.config, self.inputs)

    def step_env(self) -> dict[str, str]:
        """Store endpoint + credentials from the Airflow connection, and the code version for the manifest."""
        from edgeops_airflow.store import step_env
        from tasks.version import code_version

        return {**step_env(self.artifacts_conn_id, self.bucket), "EDGEOPS_CODE_VERSION": code_version()}

    def execute(self, context: Any) -> dict[str, Any]:
        if self.runner not in RUNNERS:
            raise AirflowFailException(f"execution.runner={self.runner!r}: choose one of {RUNNERS}")
        backend = importlib.import_module(f"edgeops_airflow.runners.{self.runner}_runner")
        self.log.info("step %s of run %s on the %s runner", self.step, self.run_id, self.runner)
        self._backend = backend.Runner(self)
        return self._backend.run(context)

    def on_kill(self) -> None:
        if self._backend is not None:
            self._backend.kill()
