"""What every runner shares: the request it gets, the result contract, and exit-code -> retry mapping.

A runner never imports the operator: it gets a ``StepRequest`` (typed config, argv, environment, logger).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from airflow.sdk.exceptions import AirflowException, AirflowFailException

from tasks.core.config import PipelineConfig
from tasks.core.names import EXIT_KILLED, EXIT_NO_RETRY

SECRET_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


@dataclass(frozen=True)
class StepRequest:
    """One ``edgeops step`` to run: argv after ``edgeops``, its environment (holds secrets: never log it)."""

    step: str
    task_id: str
    run_id: str
    config: PipelineConfig
    argv: tuple[str, ...]
    env: dict[str, str]
    log: Any

    def split_env(self) -> tuple[dict[str, str], dict[str, str]]:
        """(public, secret) parts of the environment; secrets travel only through private channels."""
        public = {k: v for k, v in self.env.items() if k not in SECRET_KEYS}
        return public, {k: v for k, v in self.env.items() if k in SECRET_KEYS}

    def image(self) -> str:
        """The step image: configured, or the content-hash tag of this checkout's step code."""
        from tasks.core.version import image_tag

        return self.config.execution.image or image_tag()


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
    """FatalErrors (exit 2) never retry; everything else (a killed container, MinIO down) may."""
    if exit_code == EXIT_NO_RETRY:
        return AirflowFailException(f"step {step}: not retried (exit {EXIT_NO_RETRY}: bad input, corrupt "
                                    f"artifact or a model that did not learn):\n{detail}")
    if exit_code == EXIT_KILLED:
        detail = f"killed (exit {EXIT_KILLED}): out of memory at the runner's memory limit, or stopped\n{detail}"
    return AirflowException(f"step {step} failed (exit {exit_code}):\n{detail}")
