"""The fault suite: real sshd devices, a real MinIO, real processes, faults injected into them (never mocked).

Every case records (case, repetitions, passed, data lost) and the session ends with that table. The shared dev
stack is only read (its client key, the cached MinIO binary); every process broken here is started here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.faults.procs import Sshd
from tests.helpers import conn_env_var, tiny_tflite_release

BENCH = Path(__file__).resolve().parents[2] / "tasks" / "device" / "bench.py"


@dataclass
class Figure:
    case: str
    repetitions: int
    passed: int
    data_lost: int
    note: str = ""


FIGURES: list[Figure] = []


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.faults)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not FIGURES:
        return
    tr = terminalreporter
    tr.section("fault suite figures")
    width = max(len(f.case) for f in FIGURES)
    tr.write_line(f"{'case':<{width}}  reps  passed  data lost  note")
    for f in FIGURES:
        tr.write_line(f"{f.case:<{width}}  {f.repetitions:>4}  {f.passed:>6}  {f.data_lost:>9}  {f.note}")


@pytest.fixture(scope="session")
def figures() -> Any:
    def record(case: str, repetitions: int, passed: int, data_lost: int = 0, note: str = "") -> None:
        FIGURES.append(Figure(case, repetitions, passed, data_lost, note))

    return record


@pytest.fixture(scope="session")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("faults")


@pytest.fixture(scope="session")
def payload(work: Path) -> dict[str, Path]:
    """One release: tiny fp32 + int8 TFLite files, a 16-image labelled sample, bench.py."""
    (work / "payload").mkdir()
    return {**tiny_tflite_release(work / "payload", samples=16), "bench.py": BENCH}


@pytest.fixture(scope="session")
def runtime_root(work: Path) -> Path:
    """One pinned runtime venv shared by every device of the suite (provisioned once, outside tiny roots)."""
    return work / "runtimes"


@pytest.fixture(scope="session")
def env_conns() -> Iterator[Any]:
    """Export connections as AIRFLOW_CONN_* for the session; removed at the end."""
    added: list[str] = []

    def export(conn_id: str, conn: dict[str, Any]) -> str:
        os.environ[conn_env_var(conn_id)] = json.dumps(conn)
        added.append(conn_env_var(conn_id))
        return conn_id.removeprefix("edgeops_device_")

    yield export
    for var in added:
        os.environ.pop(var, None)


@pytest.fixture(scope="session")
def device_factory(work: Path, runtime_root: Path, env_conns: Any) -> Iterator[Any]:
    """Start an own sshd device: ``make(root=None) -> (Sshd, device name)``; all stopped at session end."""
    started: list[Sshd] = []

    def make(root: Path | None = None) -> tuple[Sshd, str]:
        name = f"f8{uuid.uuid4().hex[:8]}"
        dev = Sshd(name, work / "sshd" / name, root or work / "roots" / name, runtime_root).start()
        started.append(dev)
        return dev, env_conns(f"edgeops_device_{name}", dev.connection())

    yield make
    for dev in started:
        dev.stop()


@pytest.fixture(scope="session")
def provisioned(device_factory: Any) -> tuple[Sshd, str]:
    """One device with the runtime built (every later device reuses the shared runtime root)."""
    from edgeops_airflow.device import DeviceClient

    dev, name = device_factory()
    with DeviceClient(name) as client:
        client.provision()
    return dev, name


def sha_ok(directory: Path) -> bool:
    """True when ``directory`` passes ``sha256sum -c`` (the definition of an intact release).

    The simulated devices' roots are on this host, so the checks read the device's very files without an SSH
    round trip (which costs more than the check itself here)."""
    try:
        return subprocess.run(["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=directory, capture_output=True,
                              check=False).returncode == 0
    except OSError:  # no such directory (no current yet)
        return False


def device_state(root: Path) -> tuple[str | None, bool, list[str]]:
    """(current release, current passes sha256sum -c, leftover staging dirs) of a device root."""
    current = root / "current"
    release = os.path.basename(os.readlink(current)) if current.is_symlink() else None
    staging = sorted(os.listdir(root / ".staging")) if (root / ".staging").is_dir() else []
    return release, sha_ok(current), staging


@pytest.fixture(scope="session", autouse=True)
def _cleanup_roots(work: Path) -> Iterator[None]:
    yield
    shutil.rmtree(work / "roots", ignore_errors=True)
