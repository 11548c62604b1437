"""Lock the device runtime: ``RUNTIME_PACKAGES`` (tasks/device/runtime.py) -> ``tasks/device/runtime.lock``.

    .venv/bin/python -m scripts.lock_device_runtime           write the lock
    .venv/bin/python -m scripts.lock_device_runtime --check   exit 1 when re-locking would change it

Per arch (aarch64, x86_64), ``pip download --only-binary=:all: --python-version 3.11 --implementation cp --abi
cp311`` with EVERY manylinux tag a bookworm device accepts (glibc 2.36 down to the arch's oldest, plus the legacy
aliases): pip does not widen ``manylinux_2_28`` to older tags, and ai-edge-litert ships only ``manylinux_2_27``.
The download resolves dependencies, so a dependency that is not pinned is an error here, not a surprise on a
device that installs with ``--no-deps``. Then ``pip hash`` of every wheel; ``runtime_lock.render`` writes the
lock, which depends only on the wheels chosen (no dates, sorted), so re-locking unchanged pins changes no byte.
Reaches PyPI through this machine's configured index (pip.conf, PIP_* variables).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from packaging.utils import parse_wheel_filename  # noqa: E402

from tasks.device.runtime import RUNTIME_PACKAGES  # noqa: E402
from tasks.device.runtime_lock import (  # noqa: E402
    ARCHES,
    LOCK_PATH,
    PYTHON,
    LockedPackage,
    LockedWheel,
    canonical,
    render,
)

GLIBC_MINOR = 36  # Debian bookworm (Raspberry Pi OS 64-bit is bookworm too)
OLDEST = {"x86_64": 5, "aarch64": 17}  # the first manylinux glibc of each arch
LEGACY = {"x86_64": {5: "manylinux1", 12: "manylinux2010", 17: "manylinux2014"}, "aarch64": {17: "manylinux2014"}}


def platform_tags(arch: str) -> list[str]:
    """Every manylinux tag a glibc-2.36 device of ``arch`` installs, most specific first (pip's own order)."""
    tags = []
    for minor in range(GLIBC_MINOR, OLDEST[arch] - 1, -1):
        tags.append(f"manylinux_2_{minor}_{arch}")
        if minor in LEGACY[arch]:
            tags.append(f"{LEGACY[arch][minor]}_{arch}")
    return tags


def _pip(*args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args], capture_output=True,
                          text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise SystemExit(f"lock_device_runtime: pip {args[0]} failed (exit {proc.returncode}):\n{tail}")
    return proc.stdout


def download(arch: str, dest: Path) -> dict[str, Path]:
    """The wheels of the pinned set for ``arch`` (dependencies resolved), by canonical package name."""
    platforms = [a for tag in platform_tags(arch) for a in ("--platform", tag)]
    _pip("download", "--no-input", "--progress-bar", "off", "--only-binary=:all:", "--python-version", PYTHON,
         "--implementation", "cp", "--abi", "cp" + PYTHON.replace(".", ""), *platforms, "--dest", str(dest),
         *RUNTIME_PACKAGES)
    wheels = {canonical(str(parse_wheel_filename(p.name)[0])): p for p in sorted(dest.glob("*.whl"))}
    pinned = {canonical(spec.partition("==")[0]) for spec in RUNTIME_PACKAGES}
    unpinned = sorted(set(wheels) - pinned)
    if unpinned or len(wheels) != len(list(dest.iterdir())):
        raise SystemExit(f"lock_device_runtime: {arch}: the pinned set pulls in {unpinned or 'non-wheel files'}; "
                         "pin every dependency in RUNTIME_PACKAGES (tasks/device/runtime.py)")
    return wheels


def pip_hashes(paths: list[Path]) -> dict[Path, str]:
    """``pip hash`` of every file (sha256), by path."""
    out, hashes, current = _pip("hash", "--algorithm", "sha256", *map(str, paths)), {}, None
    for line in out.splitlines():
        if line.endswith(":") and not line.startswith("--hash"):
            current = Path(line[:-1])
        elif line.startswith("--hash=sha256:") and current is not None:
            hashes[current] = line.removeprefix("--hash=sha256:")
    if set(hashes) != set(paths):
        raise SystemExit(f"lock_device_runtime: pip hash printed no hash for {sorted(set(paths) - set(hashes))}")
    return hashes


def lock_text(work: Path) -> str:
    """Download per arch, hash, render."""
    by_arch = {arch: download(arch, work / arch) for arch in ARCHES}
    hashes = pip_hashes([p for wheels in by_arch.values() for p in wheels.values()])
    packages = []
    for spec in RUNTIME_PACKAGES:
        name, _, version = spec.partition("==")
        wheels = tuple(LockedWheel(arch, by_arch[arch][canonical(name)].name, hashes[by_arch[arch][canonical(name)]])
                       for arch in ARCHES)
        packages.append(LockedPackage(name, version, wheels))
    return render(packages)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the committed lock; write nothing")
    parser.add_argument("--output", type=Path, default=LOCK_PATH)
    args = parser.parse_args(argv)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="edgeops-lock-") as tmp:
        text = lock_text(Path(tmp))
    took = time.monotonic() - started
    wheels = sum(line.startswith("# wheel ") for line in text.splitlines())
    if args.check:
        same = args.output.is_file() and args.output.read_text() == text
        print(f"lock_device_runtime: {args.output} is {'up to date' if same else 'STALE: re-lock'} "
              f"({len(RUNTIME_PACKAGES)} packages, {wheels} arch wheels, {took:.1f}s)")
        return 0 if same else 1
    args.output.write_text(text)
    print(f"lock_device_runtime: wrote {args.output} ({len(RUNTIME_PACKAGES)} packages, {wheels} arch wheels, "
          f"{took:.1f}s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
