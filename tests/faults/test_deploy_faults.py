"""Deploy faults on real sshd devices this suite starts: races, cut connections, bad models, a full disk."""

from __future__ import annotations

import random
import subprocess
import threading
import time
import uuid
from pathlib import Path
from shlex import quote
from typing import Any

import pytest
from edgeops_airflow.device import DeviceClient

from tasks.core.config import DeployConfig
from tasks.core.exceptions import DeviceError
from tests.faults.conftest import device_state, sha_ok
from tests.faults.payloads import garbage_tflite, nan_tflite
from tests.faults.procs import CutProxy


def _rid(tag: str) -> str:
    return f"{tag}-{uuid.uuid4().hex[:8]}"


def test_concurrent_deploys_of_one_run_to_one_device(provisioned: Any, payload: dict[str, Path], figures: Any) -> None:
    """Two deploys of one run race (x10) while a watcher checks `current` with sha256sum -c the whole time."""
    dev, name = provisioned
    reps, passed, broken, reads = 10, 0, 0, [0]
    with DeviceClient(name) as check:
        check.deploy(_rid("base"), payload, "int8")
        stop, bad_reads = threading.Event(), []

        def watch() -> None:
            while not stop.is_set():
                reads[0] += 1
                if not sha_ok(dev.root / "current"):
                    bad_reads.append(1)
                time.sleep(0.01)

        threading.Thread(target=watch, daemon=True).start()
        for _ in range(reps):
            rid, results, errors = _rid("race"), [], []

            def deploy(rid: str = rid, results: list = results, errors: list = errors) -> None:
                try:
                    with DeviceClient(name) as client:
                        results.append(client.deploy(rid, payload, "int8"))
                except Exception as exc:  # noqa: BLE001 - recorded and asserted below
                    errors.append(exc)

            threads = [threading.Thread(target=deploy) for _ in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=300)
            current, intact, staging = device_state(dev.root)
            broken += not intact
            uploads = sorted(r.reused for r in results)
            passed += not errors and intact and current == rid and uploads == [False, True] and not staging
        stop.set()
    figures("concurrent deploys of one run, one device", reps, passed, broken + len(bad_reads),
            f"watcher: sha256sum -c on current {reads[0]} times during the races")
    assert not bad_reads and passed == reps


def test_connection_cut_at_a_random_byte(provisioned: Any, payload: dict[str, Path], figures: Any,
                                         env_conns: Any) -> None:
    """The SSH connection dies after a random number of bytes of a deploy (x20); then the retry."""
    dev, name = provisioned
    proxy = CutProxy(dev.port)
    cut = env_conns(f"edgeops_device_{name}cut", dev.connection(port=proxy.port))
    rng, reps, passed, lost, failed_attempts = random.Random(8), 20, 0, 0, 0
    try:
        with DeviceClient(cut, connect_attempts=1) as measured:
            measured.deploy(_rid("measure"), payload, "fp32")
        total = proxy.sent  # client->server bytes of one whole deploy, handshake included
        for _ in range(reps):
            rid, before = _rid("cut"), device_state(dev.root)[0]
            proxy.cut_after = rng.randint(total // 20, total - total // 20)
            try:
                with DeviceClient(cut, connect_attempts=1) as client:
                    client.deploy(rid, payload, "fp32")
            except DeviceError:
                failed_attempts += 1
            proxy.cut_after = None
            current, intact, _ = device_state(dev.root)
            release = dev.root / "releases" / rid
            release_ok = not release.exists() or sha_ok(release)
            lost += not (intact and release_ok and current in (before, rid))
            with DeviceClient(name) as retry:
                retry.deploy(rid, payload, "fp32")
            current, intact, staging = device_state(dev.root)
            passed += intact and release_ok and current == rid and not staging
    finally:
        proxy.close()
    figures("SSH/SFTP cut at a random byte, then retry", reps, passed, lost,
            f"{failed_attempts} attempts cut mid-deploy of {total} bytes; {proxy.cuts} cuts")
    assert lost == 0 and passed == reps and failed_attempts >= reps // 2


@pytest.mark.parametrize("fault", ["nan", "unloadable"])
def test_a_broken_model_never_becomes_current(provisioned: Any, payload: dict[str, Path], figures: Any,
                                              work: Path, fault: str) -> None:
    dev, name = provisioned
    bad = (nan_tflite if fault == "nan" else garbage_tflite)(work / f"{fault}.tflite")
    reps, passed = 3, 0
    with DeviceClient(name) as client:
        good = _rid("good")
        client.deploy(good, payload, "fp32")
        for i in range(reps):
            rid, variant = _rid(fault), ("int8" if i % 2 else "fp32")  # as the current variant or a side one
            files = {**payload, "int8.tflite": bad}
            with pytest.raises(DeviceError, match="smoke test in staging failed.*int8") as err:
                client.deploy(rid, files, variant)
            current, intact, staging = device_state(dev.root)
            gone = not (dev.root / "releases" / rid).exists()
            passed += current == good and intact and not staging and gone and bool(err.value)
    figures(f"model with {fault} output: smoke test refuses it", reps, passed, 0)
    assert passed == reps


def test_a_tampered_kept_release_is_refused_before_the_switch(provisioned: Any, payload: dict[str, Path],
                                                              figures: Any, work: Path) -> None:
    """A kept release altered on the device (model replaced, SHA256SUMS rewritten to match): the signed statement
    no longer matches, so a rollback to it is refused before `current` moves, and `current` stays intact.
    (Before signed statements this got as far as the health check through `current` and was switched back.)"""
    dev, name = provisioned
    reps, passed = 3, 0
    with DeviceClient(name) as client:
        for _ in range(reps):
            old, new = _rid("old"), _rid("new")
            client.deploy(old, payload, "fp32")
            client.deploy(new, payload, "fp32")
            rel = dev.root / "releases" / old
            (rel / "fp32.tflite").write_bytes(garbage_tflite(work / "junk.tflite").read_bytes())
            sums = subprocess.run(["sha256sum", "bench.py", "fp32.tflite", "int8.tflite", "sample.npz"], cwd=rel,
                                  capture_output=True, text=True, check=True).stdout
            (rel / "SHA256SUMS").write_text(sums)
            with pytest.raises(DeviceError, match=f"release {old} is damaged on the device: roll out its run again"):
                client.rollback(old)
            current, intact, _ = device_state(dev.root)
            passed += current == new and intact
    figures("tampered kept release: refused before the switch", reps, passed, 0)
    assert passed == reps


def test_device_disk_full(device_factory: Any, provisioned: Any, payload: dict[str, Path], figures: Any,
                          work: Path) -> None:
    """The device root is a real 2 MiB tmpfs filled up to ~16 KiB: clear error, `current` unchanged, no staging."""
    mount = work / "tinyfs"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], check=True)
    reps, passed = 5, 0
    try:
        dev, name = device_factory(root=mount / "root")
        with DeviceClient(name) as client:
            base = _rid("base")
            client.deploy(base, payload, "fp32")
            free_kib = int(client.run(f"df -Pk {quote(str(mount))} | tail -1")[1].split()[3])
            client.run(f"head -c {(free_kib - 16) * 1024} /dev/zero > {quote(str(mount))}/filler", check=False)
            for _ in range(reps):
                rid = _rid("full")
                with pytest.raises(DeviceError, match="disk full"):
                    client.deploy(rid, payload, "int8")
                current, intact, staging = device_state(dev.root)
                gone = not (dev.root / "releases" / rid).exists()
                passed += current == base and intact and not staging and gone
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
    figures("device disk full", reps, passed, 0, "2 MiB tmpfs root")
    assert passed == reps


def test_a_held_lock_times_out_with_a_clear_error(provisioned: Any, payload: dict[str, Path], figures: Any) -> None:
    """Another deploy holds the device lock for longer than deploy.lock_timeout_s: nothing is touched."""
    dev, name = provisioned
    before = device_state(dev.root)
    with DeviceClient(name) as holder, holder.locked(str(dev.root), 10):
        with DeviceClient(name, deploy=DeployConfig(lock_timeout_s=10)) as client:
            with pytest.raises(DeviceError, match="could not lock .* within 10s: another deploy holds it"):
                client.deploy(_rid("held"), payload, "fp32")
    assert device_state(dev.root) == before
    figures("device lock held elsewhere: clear timeout", 1, 1, 0)
