"""Retry what is transient, fail at once on what is fatal: the policy every plumbing task shares.

Airflow retries any exception but ``AirflowFailException``. A plumbing task (resolve_config, announce, the
fan-outs, rollout planning) fails for two reasons: the infrastructure blinked (the API server or metadata DB
slow after a restart, MinIO or a connection lookup briefly unavailable) or its input is wrong. The first must
be retried, the second never: ``fatal_is_final`` turns a ``FatalError`` (``ConfigError`` and friends) into
``AirflowFailException``, and ``PLUMBING_RETRIES`` gives every plumbing task retries for the rest.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from tasks.core.exceptions import FatalError

# ~15 s, 30 s, 60 s, 120 s: outlasts an API server or MinIO restart on a busy 2-core machine (~1-2 min).
PLUMBING_RETRIES: dict[str, Any] = {
    "retries": 4,
    "retry_delay": timedelta(seconds=15),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=3),
}

# Tasks that run ``all_done`` (after device tasks that may have failed, or a plan that refused the request)
# cannot recover on a retry from an upstream that failed for good: one short retry covers a store blip, and a
# refused request fails the run in seconds instead of after the plumbing's minutes of backoff.
ALL_DONE_RETRIES: dict[str, Any] = {"retries": 1, "retry_delay": timedelta(seconds=10)}

# Test-only: a directory; a file named after a task id there makes that task's next try fail once, transiently.
ENV_FAULT_DIR = "EDGEOPS_TEST_TRANSIENT_FAULT_DIR"


class InjectedTransientError(ConnectionError):
    """A transient fault put there by a test (see ``fault_point``): a retry must get past it."""


def fault_point(task_id: str) -> None:
    """Fail this try once with a transient error when a test asked for it (the file is consumed)."""
    folder = os.environ.get(ENV_FAULT_DIR)
    if not folder:
        return
    marker = Path(folder) / task_id
    try:
        marker.unlink()
    except FileNotFoundError:
        return
    raise InjectedTransientError(f"injected transient fault in {task_id} (test hook {ENV_FAULT_DIR})")


@contextmanager
def fatal_is_final() -> Generator[None, None, None]:
    """A ``FatalError`` fails the task without a retry; anything else propagates and is retried."""
    from airflow.sdk.exceptions import AirflowFailException

    try:
        yield
    except FatalError as exc:
        raise AirflowFailException(f"{type(exc).__name__}: {exc}") from exc
