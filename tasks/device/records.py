"""What the device operations return (the Airflow plugin's device_*.py write them, its operators read them).

Each is a frozen dataclass with one writer (the device operation) and one reader (the device operator, or
``edgeops fleet status --check`` for ``OnDevice``).
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass, field
from shlex import quote
from typing import Any

from tasks.core.results import FileEntry, Record
from tasks.device import layout

LISTING_SEPARATOR = "---"


@dataclass(frozen=True)
class DeviceFacts(Record):
    """The device as its system python sees it (``DeviceRuntime.facts``)."""

    arch: str
    kernel: str
    cpus: int | None
    os: str
    python: str

    def summary(self) -> str:
        return f"{self.arch}, {self.os or 'unknown OS'}, kernel {self.kernel}, {self.cpus} CPU(s), python {self.python}"


@dataclass(frozen=True)
class Provisioned(Record):
    """The pinned runtime venv (``DeviceRuntime.provision``): reused or built now, and its package versions."""

    installed: bool  # False: the venv was there, ready, and imports
    venv: str
    packages: dict[str, str]  # distribution -> version, as the venv reports them


@dataclass(frozen=True)
class Deployed(Record):
    """One run of the deploy protocol (``DeviceReleases.deploy``)."""

    release: str
    previous: str | None  # what ``current`` pointed at before (None: nothing, or this very release)
    current_variant: str
    files: tuple[FileEntry, ...]
    reused: bool  # the identical release was already on the device
    app_failure: str = ""  # "<step>: <why>" when activate or health failed: current was switched back to previous


@dataclass(frozen=True)
class Switched(Record):
    """A switch of ``current`` (``DeviceReleases.rollback`` / ``remove_current``)."""

    release: str | None  # what ``current`` points at now (None: removed)
    previous: str | None
    app_failure: str = ""  # "<step>: <why>": the target failed activate/health, ``release`` is where it went back


@dataclass(frozen=True)
class BenchRun(Record):
    """bench.py's JSON document from one device run (``DeviceReleases.benchmark``)."""

    label: str  # native | emulated | host
    facts: dict[str, Any]  # bench.py's ``device`` object (arch, cpus, ...)
    results: dict[str, dict[str, Any]]  # mode -> bench.py's per-model result
    document: dict[str, Any] = field(default_factory=dict)  # the whole document, stored as printed

    @property
    def arch(self) -> str:
        return str(self.facts.get("arch", ""))


@dataclass(frozen=True)
class OnDevice(Record):
    """What a device itself says about its releases (``edgeops fleet status --check``, a rollback to a run)."""

    current: str | None  # the release ``current`` points at
    kept: tuple[str, ...]  # releases kept on the device, newest first
    damaged: tuple[str, ...] = ()  # files of ``current`` that fail ``sha256sum -c`` on the device


def listing_command(root: str) -> str:
    """One device command whose output ``parse_listing`` reads: ``current``'s target, then the kept releases."""
    current, releases = quote(posixpath.join(root, layout.CURRENT)), quote(posixpath.join(root, layout.RELEASES))
    return (f"readlink {current} 2>/dev/null; echo {LISTING_SEPARATOR}; ls -1t {releases} 2>/dev/null; "
            f"echo {LISTING_SEPARATOR}; cd {current} 2>/dev/null && sha256sum -c --quiet {layout.SUMS} 2>&1 | "
            "grep -v '^sha256sum:' || true")


def parse_listing(out: str) -> OnDevice:
    head, _, tail = out.partition(LISTING_SEPARATOR)
    tail, _, check = tail.partition(LISTING_SEPARATOR)
    current = posixpath.basename(head.strip().rstrip("/")) or None
    damaged = tuple(line.split(":", 1)[0].strip() for line in check.splitlines() if "FAILED" in line)
    return OnDevice(current=current, kept=tuple(line.strip() for line in tail.splitlines() if line.strip()),
                    damaged=damaged)


def bench_doc(stdout: str) -> dict[str, Any]:
    """bench.py's JSON document (its last stdout line), or {} when it printed none."""
    try:
        doc = json.loads(stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def bench_error(stdout: str) -> str | None:
    """The message of bench.py's error document (a delegate that did not load or apply), if it printed one."""
    error = bench_doc(stdout).get("error")
    return str(error.get("message")) if isinstance(error, dict) else None
