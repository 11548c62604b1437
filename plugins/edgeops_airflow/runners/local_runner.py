"""``local`` runner: the step CLI as a subprocess of the worker, with the worker's Python. Logs stream live.

The step gets an allowlisted environment (never the worker's ``AIRFLOW__*`` secrets: it deserializes user
models and untrusted images), dies with the task process (``PR_SET_PDEATHSIG``: a SIGKILLed task leaves no
orphan writing to the store while its retry starts), and ``kill`` escalates SIGTERM -> SIGKILL.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

from edgeops_airflow.runners.common import StepRequest, failure, last_json

REPO_ROOT = Path(__file__).resolve().parents[3]
# What a step may see of the worker's environment; everything else (AIRFLOW__*, cloud creds) stays out.
ENV_ALLOWLIST = ("PATH", "HOME", "USER", "LANG", "LC_ALL", "TZ", "TMPDIR", "EDGEOPS_CACHE", "TFDS_DATA_DIR",
                 "KERAS_HOME", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "TF_CPP_MIN_LOG_LEVEL", "OMP_NUM_THREADS")
KILL_GRACE_S = 10.0
_PR_SET_PDEATHSIG = 1


def step_environment(request_env: dict[str, str], worker_env: dict[str, str] | None = None) -> dict[str, str]:
    worker_env = dict(os.environ if worker_env is None else worker_env)
    env = {k: worker_env[k] for k in ENV_ALLOWLIST if k in worker_env}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return {**env, **request_env, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO_ROOT)}


def _die_with_parent() -> None:  # runs in the child between fork and exec
    os.setsid()
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:  # not Linux/glibc: no parent-death signal, kill() still cleans up
        pass


class LocalRunner:
    def __init__(self, request: StepRequest, kill_grace_s: float = KILL_GRACE_S) -> None:
        self.request = request
        self.kill_grace_s = kill_grace_s
        self.proc: subprocess.Popen | None = None

    def run(self, context: Any) -> dict[str, Any]:
        req = self.request
        argv = [sys.executable, "-m", "tasks.cli", *req.argv]
        self.proc = subprocess.Popen(argv, cwd=REPO_ROOT, env=step_environment(req.env), stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, preexec_fn=_die_with_parent)
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
