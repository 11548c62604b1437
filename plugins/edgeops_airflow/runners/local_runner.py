"""``local`` runner: the step CLI as a subprocess of the worker, with the worker's Python. Log streams live."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import deque
from pathlib import Path
from typing import Any

from edgeops_airflow.step_operator import failure, last_json

REPO_ROOT = Path(__file__).resolve().parents[3]


class Runner:
    def __init__(self, op: Any) -> None:
        self.op = op
        self.proc: subprocess.Popen | None = None

    def run(self, context: Any) -> dict[str, Any]:
        op = self.op
        env = {**os.environ, **op.step_env(), "PYTHONUNBUFFERED": "1",
               "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
               "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
        argv = [sys.executable, "-m", "tasks.cli", *op.command()]
        self.proc = subprocess.Popen(argv, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, start_new_session=True)
        tail: deque[str] = deque(maxlen=200)
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            tail.append(line)
            if not line.startswith("{"):
                op.log.info("%s", line)
        rc = self.proc.wait()
        if rc != 0:
            raise failure(op.step, rc, "\n".join(list(tail)[-15:]))
        return last_json(tail, op.step)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
