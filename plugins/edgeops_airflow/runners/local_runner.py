"""``local`` runner: the step CLI as a subprocess of the worker, with the worker's Python. Logs stream live.

The step gets an allowlisted environment (never the worker's ``AIRFLOW__*`` secrets: it deserializes user
models and untrusted images), runs as the unprivileged step user when the task process is root (``step_user``:
it can read neither the task's ``/proc/<pid>/environ`` nor the secret files), dies with the task process
(``PR_SET_PDEATHSIG``: a SIGKILLed task leaves no orphan writing to the store while its retry starts), and
``kill`` escalates SIGTERM -> SIGKILL.
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

from edgeops_airflow.runners import step_user
from edgeops_airflow.runners.common import StepRequest, failure, last_json

REPO_ROOT = Path(__file__).resolve().parents[3]
# What a step may see of the worker's environment; everything else (AIRFLOW__*, cloud creds) stays out.
ENV_ALLOWLIST = ("PATH", "HOME", "USER", "LANG", "LC_ALL", "TZ", "TMPDIR", "EDGEOPS_CACHE", "TFDS_DATA_DIR",
                 "KERAS_HOME", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "TF_CPP_MIN_LOG_LEVEL", "OMP_NUM_THREADS")
KILL_GRACE_S = 10.0


def step_environment(request_env: dict[str, str], worker_env: dict[str, str] | None = None,
                     who: step_user.StepIdentity | None = None) -> dict[str, str]:
    """The allowlisted worker environment, the step user's own HOME/TMPDIR/cache, then the request's."""
    worker_env = dict(os.environ if worker_env is None else worker_env)
    env = {k: worker_env[k] for k in ENV_ALLOWLIST if k in worker_env}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    own = {} if who is None else who.env()
    return {**env, **own, **request_env, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO_ROOT)}


def spawn(argv: list[str], request_env: dict[str, str], **popen: Any) -> subprocess.Popen:
    """Start a step process exactly as the runner does: step user, allowlisted env, own session, dies with us."""
    who = step_user.identity()
    if who is not None:
        step_user.prepare(who)
    try:
        return subprocess.Popen(argv, cwd=REPO_ROOT, env=step_environment(request_env, who=who),
                                preexec_fn=functools.partial(step_user.child_setup, who), **popen)
    except PermissionError as exc:
        user = "this user" if who is None else f"the step user {who.name!r}"
        raise step_user.StepUserError(f"{user} cannot execute {argv[0]} ({exc.strerror}): it needs search (x) "
                                      f"permission on every directory above the interpreter and read access to "
                                      f"it; {step_user.FIX}") from exc


class LocalRunner:
    def __init__(self, request: StepRequest, kill_grace_s: float = KILL_GRACE_S) -> None:
        self.request = request
        self.kill_grace_s = kill_grace_s
        self.proc: subprocess.Popen | None = None

    def run(self, context: Any) -> dict[str, Any]:
        req = self.request
        argv = [sys.executable, "-m", "tasks.cli", *req.argv]
        self.proc = spawn(argv, req.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        tail: deque[str] = deque(maxlen=200)
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            tail.append(line)
            if not line.startswith("{"):
                req.log.info("%s", line)
        rc = self.proc.wait()
        if rc != 0:
            raise failure(req.step, 128 + -rc if rc < 0 else rc, "\n".join(list(tail)[-15:]))
        return last_json(tail, req.step)

    def kill(self) -> None:
        """SIGTERM the step's process group, then SIGKILL what is still alive after a grace period."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.kill_grace_s
        while self.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
