"""A step that hunts for the platform's secrets, started exactly as the local runner starts steps.

``TASK`` is the task process reduced to what matters: a canary in its own environment (as Airflow's Fernet key
is), then ``local_runner.spawn`` of ``PROBE``. The probe walks its ancestors' ``/proc/<pid>/environ``, then
every other user's process's, and tries to read each path it is given; it prints one JSON line: what it could
read. Used by the fault suite (dev stack) and the compose test (``docker compose exec`` into a worker).
"""

from __future__ import annotations

import json

CANARY_VAR = "AIRFLOW__CORE__FERNET_KEY"

PROBE = r"""
import json, os, sys
paths, found, pid = json.loads(sys.argv[1]), [], os.getppid()
while pid > 1:
    try:
        environ = open(f"/proc/{pid}/environ", "rb").read()
        found.append(f"/proc/{pid}/environ" + (" (canary)" if sys.argv[2].encode() in environ else ""))
    except OSError:
        pass
    pid = int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
for entry in os.listdir("/proc"):  # every other user's process (a fellow step's holds only the step's own env)
    if not entry.isdigit() or int(entry) == os.getpid():
        continue
    try:
        if os.stat(f"/proc/{entry}").st_uid == os.getuid():
            continue
        environ = open(f"/proc/{entry}/environ", "rb").read()
        found.append(f"/proc/{entry}/environ" + (" (canary)" if sys.argv[2].encode() in environ else ""))
    except OSError:
        pass
for path in paths:
    try:
        open(path, "rb").read(1)
        found.append(path)
    except OSError:
        pass
print(json.dumps({"uid": os.getuid(), "groups": os.getgroups(), "found": found}), flush=True)
"""

TASK = r"""
import json, subprocess, sys
from edgeops_airflow.runners.local_runner import spawn
probe, paths, canary, how = sys.argv[1:5]
argv = [sys.executable, "-c", probe, paths, canary]
if how == "runner":
    proc = spawn(argv, {}, stdout=subprocess.PIPE, text=True)
else:  # the control: a plain child of the task's user
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
out, _ = proc.communicate(timeout=60)
print(out.strip().splitlines()[-1], flush=True)
"""


def task_argv(python: str, paths: list[str], canary: str, control: bool = False) -> list[str]:
    """argv of the task process (give it ``{CANARY_VAR: canary}`` in its environment). ``control``: the probe
    is a plain child of the task's user instead, and must find the secrets (so the probe does look)."""
    return [python, "-c", TASK, PROBE, json.dumps(paths), canary, "plain" if control else "runner"]
