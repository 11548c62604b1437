"""Re-locking the device runtime against the real index (PyPI through this machine's pip configuration)
reproduces the committed lock byte for byte: the lock is a function of the pins and the wheels, nothing else."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tasks.device.runtime import RUNTIME_PACKAGES
from tasks.device.runtime_lock import ARCHES, LOCK_PATH

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def test_relocking_reproduces_the_committed_lock(tmp_path: Path) -> None:
    out = tmp_path / "runtime.lock"
    for _ in range(2):  # twice: the second run must not differ from the first either
        proc = subprocess.run([sys.executable, "-m", "scripts.lock_device_runtime", "--output", str(out)], cwd=REPO,
                              capture_output=True, text=True, check=False, timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert out.read_text() == LOCK_PATH.read_text()
    check = subprocess.run([sys.executable, "-m", "scripts.lock_device_runtime", "--check"], cwd=REPO,
                           capture_output=True, text=True, check=False, timeout=600)
    counts = f"({len(RUNTIME_PACKAGES)} packages, {len(RUNTIME_PACKAGES) * len(ARCHES)} arch wheels"
    assert check.returncode == 0 and f"up to date {counts}" in check.stdout, check.stdout
