"""Who a local step runs as: a dedicated unprivileged user when the task process is root.

A step deserializes user models (a SavedModel's graph runs on load) and untrusted images. Run as the task's own
user it could read ``/proc/<parent>/environ`` (Airflow's Fernet key, JWT secret) and every secret file the task
process can. Run as ``edgeops-step`` (no supplementary groups, not group 0) it can read neither: ``/proc/<pid>/
environ`` needs ptrace access to the owner's uid, and the secret files are 0600/0640 root:root or root:0.
Its HOME, TMPDIR and cache are directories it owns under its home. A task process that is not root cannot switch
users; the step then runs as that user (``identity()`` is None) and docs/security.md says what that leaves.
"""

from __future__ import annotations

import ctypes
import os
import pwd
import signal
from dataclasses import dataclass
from pathlib import Path

from tasks.core.names import ENV_STEP_USER, STEP_USER

_PR_SET_PDEATHSIG = 1
FIX = ("create it as root with scripts/bootstrap.sh (make install), which also lets it traverse to the "
       "interpreter; the worker image (docker/airflow.Dockerfile) has it")


class StepUserError(RuntimeError):
    """The step user is missing or unusable: the step is not started (never silently as root)."""


@dataclass(frozen=True)
class StepIdentity:
    name: str
    uid: int
    gid: int
    home: Path

    def env(self) -> dict[str, str]:
        """HOME, TMPDIR and the data cache in directories the step user owns."""
        return {"HOME": str(self.home), "USER": self.name, "TMPDIR": str(self.home / "tmp"),
                "EDGEOPS_CACHE": str(self.home / "cache")}


def identity(environ: dict[str, str] | None = None) -> StepIdentity | None:
    """The step user when this process is root, else None (an unprivileged process cannot switch users)."""
    if os.geteuid() != 0:
        return None
    name = (os.environ if environ is None else environ).get(ENV_STEP_USER) or STEP_USER
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise StepUserError(f"the step user {name!r} does not exist, and a step never runs as root: {FIX}") from None
    if entry.pw_uid == 0 or entry.pw_gid == 0:
        raise StepUserError(f"the step user {name!r} has uid {entry.pw_uid} gid {entry.pw_gid}: it must be "
                            f"neither root nor in group 0 (which reads the compose secrets)")
    return StepIdentity(name, entry.pw_uid, entry.pw_gid, Path(entry.pw_dir))


def prepare(who: StepIdentity) -> None:
    """Create the step user's home, tmp and cache (0700, its own); runs as root in the task process."""
    for path in (who.home, who.home / "tmp", who.home / "cache"):
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        if path.is_symlink():
            raise StepUserError(f"{path} is a symlink: the step user's directories must be real directories")
        os.chown(path, who.uid, who.gid)
        path.chmod(0o700)


def child_setup(who: StepIdentity | None) -> None:
    """Runs in the child between fork and exec: own session, drop to the step user, then die with the parent.

    The parent-death signal is set after the switch: the kernel clears it whenever the credentials change.
    """
    os.setsid()
    if who is not None:
        os.setgroups([])
        os.setgid(who.gid)
        os.setuid(who.uid)
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:  # not Linux/glibc: no parent-death signal, kill() still cleans up
        pass
