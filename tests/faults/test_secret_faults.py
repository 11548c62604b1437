"""A step reading the platform's secrets finds nothing: the probe (tests/secret_probe.py) is started by the local
runner's own ``spawn`` from a task process whose environment holds a canary Fernet key, and tries the task's
and its ancestors' ``/proc/<pid>/environ`` and every secret file of the dev stacks. The control (the same probe
as a plain child of the task's user) reads them all, so the probe does look.

``data lost`` counts the secrets the step could read.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.secret_probe import CANARY_VAR, task_argv

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
SECRETS = ("signing.json", "env.json", "minio-service-account.secret", "airflow/passwords.json",
           "airflow/secrets.json", "airflow/airflow.env", "airflow/connections.json", "keys/id_ed25519")


def secret_files(work: Path) -> list[str]:
    """The dev stacks' secret files that exist (this checkout's and the test stack's), plus a 0600 stand-in."""
    from tests.conftest import STATE_DIR

    stand_in = work / "airflow" / "passwords.json"
    stand_in.parent.mkdir(parents=True, exist_ok=True)
    stand_in.write_text('{"admin": "canary"}')
    stand_in.chmod(0o600)
    roots = {STATE_DIR.resolve(), *(p.resolve() for p in REPO.glob(".devstack*"))}
    return sorted({str(r / s) for r in roots for s in SECRETS if (r / s).exists()} | {str(stand_in)})


def _run(argv: list[str], canary: str) -> dict:
    env = {**os.environ, CANARY_VAR: canary, "PYTHONPATH": f"{REPO}:{REPO / 'plugins'}"}
    out = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(os.geteuid() != 0, reason="a task process that is not root cannot switch users")
def test_a_step_reading_secrets_finds_nothing(work, figures):
    paths, canary = secret_files(work), f"canary-{uuid.uuid4().hex}"
    control = _run(task_argv(sys.executable, paths, canary, control=True), canary)
    assert set(paths) <= set(control["found"]), f"the control could not read {set(paths) - set(control['found'])}"
    assert any("(canary)" in f for f in control["found"]), "the control did not see the canary"
    step = _run(task_argv(sys.executable, paths, canary), canary)
    targets = len(paths) + 2  # the files, the task's environ and its ancestors'
    figures("a step reading secrets: finds nothing", targets, targets - len(step["found"]), len(step["found"]),
            f"{len(paths)} secret files + every other process's /proc/<pid>/environ; step uid {step['uid']}")
    assert step["uid"] != 0 and 0 not in step["groups"]
    assert step["found"] == [], f"a step read: {step['found']}"
