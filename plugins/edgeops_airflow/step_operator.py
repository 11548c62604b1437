"""Run one ``edgeops step`` and hand its JSON result to XCom.

``StepOperator`` holds what every runner shares (the command line, the result contract); a runner
subclass only decides *where* the command runs. ``LocalStepOperator`` runs it as a subprocess of the
worker; a DockerOperator / KubernetesPodOperator runner can reuse ``step_command`` unchanged.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG_ERROR_EXIT = 2  # tasks.cli exits 2 for config errors: retrying cannot help


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
    return [
        "step",
        step,
        "--run-id",
        run_id,
        "--config-json",
        json.dumps(plain(config), sort_keys=True),
        "--inputs",
        json.dumps(plain(inputs), sort_keys=True),
    ]


def parse_result(last_line: str, step: str) -> dict[str, Any]:
    try:
        result = json.loads(last_line)
    except json.JSONDecodeError as exc:
        raise AirflowException(
            f"step {step} printed no JSON result as its last stdout line: {last_line!r}"
        ) from exc
    if not isinstance(result, dict):
        raise AirflowException(f"step {step} result must be a JSON object, got {result!r}")
    return result


class StepOperator(BaseOperator):
    """Base for runners. ``config`` is the resolved config dict; ``inputs`` holds URIs and small values."""

    template_fields: Sequence[str] = ("run_id", "config", "inputs")
    ui_color = "#e8f4ea"

    def __init__(
        self,
        *,
        step: str,
        run_id: str,
        config: Any,
        inputs: Any = None,
        artifacts_conn_id: str = "edgeops_minio",
        bucket: str = "artifacts",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.step, self.run_id, self.config, self.inputs = step, run_id, config, inputs or {}
        self.artifacts_conn_id, self.bucket = artifacts_conn_id, bucket

    def command(self) -> list[str]:
        return step_command(self.step, self.run_id, self.config, self.inputs)


class LocalStepOperator(StepOperator):
    """Runs the step CLI with the worker's Python (the ``local`` runner); streams its log live."""

    def __init__(self, *, python: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.python = python or sys.executable
        self._proc: subprocess.Popen | None = None

    def execute(self, context: Any) -> dict[str, Any]:
        from edgeops_airflow.store import step_env

        env = {
            **os.environ,
            **step_env(self.artifacts_conn_id, self.bucket),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
            "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"),
            "PYTHONUNBUFFERED": "1",
        }
        argv = [self.python, "-m", "tasks.cli", *self.command()]
        self.log.info("local runner: %s step %s (run %s)", self.python, self.step, self.run_id)
        self._proc = subprocess.Popen(
            argv,
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        tail: deque[str] = deque(maxlen=40)
        last_json = ""
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            line = line.rstrip("\n")
            if line.startswith("{") and line.endswith("}"):
                last_json = line
            else:
                tail.append(line)
                self.log.info("%s", line)
        rc = self._proc.wait()
        if rc != 0:
            msg = f"step {self.step} exited {rc}:\n" + "\n".join(list(tail)[-15:])
            raise (AirflowFailException if rc == CONFIG_ERROR_EXIT else AirflowException)(msg)
        return parse_result(last_json, self.step)

    def on_kill(self) -> None:
        if self._proc and self._proc.poll() is None:
            os.killpg(self._proc.pid, signal.SIGTERM)
