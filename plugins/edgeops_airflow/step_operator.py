"""Run one ``edgeops step`` somewhere and hand its JSON result (a ``tasks.core.results`` record) to XCom.

``StepOperator`` owns what every backend shares: it parses the resolved config once into the typed
``PipelineConfig``, builds the command line and the step's environment (store credentials from the Airflow
connection), and picks the backend named by ``execution.runner`` from the registry in ``runners/``:
``local`` (subprocess of the worker), ``docker`` (DockerOperator on the step image) and ``kubernetes``
(KubernetesPodOperator). Step code is the same for all three.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from edgeops_airflow.ui.links import STEP_LINKS, persist_run_links
from tasks.core.names import ARTIFACTS_BUCKET, ENV_CODE_VERSION, MINIO_CONN_ID


def plain(value: Any) -> Any:
    """XCom values of mapped tasks arrive as lazy sequences; make them JSON-serialisable."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, Sequence) or hasattr(value, "__iter__"):
        return [plain(v) for v in value]
    return value


class StepOperator(BaseOperator):
    """``config`` is the resolved config (XCom of resolve_config); ``inputs`` holds upstream records.

    ``mode`` (optional) is merged into the inputs: it lets the DAG map one step over the quantization modes.
    """

    template_fields: Sequence[str] = ("run_id", "config", "inputs", "mode")
    ui_color = "#e8f4ea"
    operator_extra_links = STEP_LINKS  # Report, Artifacts (edgeops_airflow/ui/links.py)

    def __init__(self, *, step: str, run_id: str, config: Any, inputs: Any = None, mode: str | None = None,
                 artifacts_conn_id: str = MINIO_CONN_ID, bucket: str = ARTIFACTS_BUCKET, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.step, self.run_id, self.config, self.inputs, self.mode = step, run_id, config, inputs or {}, mode
        self.artifacts_conn_id, self.bucket = artifacts_conn_id, bucket
        self._runner: Any = None

    def typed_config(self) -> Any:
        from tasks.core.config import PipelineConfig
        from tasks.core.exceptions import ConfigError

        try:
            return PipelineConfig.from_dict(plain(self.config))
        except ConfigError as exc:
            raise AirflowFailException(f"step {self.step}: the resolved config is invalid: {exc}") from exc

    def step_inputs(self) -> dict[str, Any]:
        return {**plain(self.inputs), **({"mode": self.mode} if self.mode else {})}

    def step_env(self) -> dict[str, str]:
        """Store endpoint + credentials from the Airflow connection, and the code version for the manifest."""
        from edgeops_airflow.store import step_env
        from tasks.core.version import code_version

        return {**step_env(self.artifacts_conn_id, self.bucket), ENV_CODE_VERSION: code_version()}

    def request(self, env: dict[str, str] | None = None) -> Any:
        from edgeops_airflow.runners.common import StepRequest

        config = self.typed_config()
        argv = ("step", self.step, "--run-id", self.run_id, "--config-json", config.to_json(),
                "--inputs", json.dumps(self.step_inputs(), sort_keys=True))
        return StepRequest(self.step, self.task_id, self.run_id, config, argv,
                           self.step_env() if env is None else env, self.log)

    def execute(self, context: Any) -> dict[str, Any]:
        from edgeops_airflow.reliability import fault_point
        from edgeops_airflow.runners import runner_for

        fault_point(self.task_id)
        persist_run_links(context, self.run_id, self.artifacts_conn_id, self.bucket)
        request = self.request()
        self.log.info("step %s of run %s on the %s runner", self.step, self.run_id, request.config.execution.runner)
        self._runner = runner_for(request)
        return self._runner.run(context)

    def on_kill(self) -> None:
        if self._runner is not None:
            self._runner.kill()
