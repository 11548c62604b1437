"""Container devices: config devices with ``"kind": "qemu"`` run as a Docker container of a foreign-arch image.

``edgeops/pi:bookworm-arm64`` (built by scripts/images/pi_arm64.sh) runs under qemu-aarch64 through
binfmt_misc (scripts/engine.sh), with its own sshd on the device's port (``--network host``). The device dir
``.devstack/devices/<name>/`` is bind-mounted at the same path inside the container, so the sshd_config,
host key, authorized_keys and deploy root written by devices.py are valid on both sides and tests can inspect
the deploy root from the host. Login is ``root`` (the image has no other user).

Started only by ``up --with-containers`` (or EDGEOPS_WITH_CONTAINERS=1); ``status`` does not fail for an
``optional`` device that is down, and env.json lists a container device only while it is up.
"""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
import time
from pathlib import Path

from . import devices
from .common import LOGS, DevstackError, ensure_port_free, load_stack, port_open, tail

ENGINE_HINT = "scripts/engine.sh"
IMAGE_HINT = "scripts/images/pi_arm64.sh"
LOGIN = "root"
LABEL = "org.edgeops.devstack.device"
_HOST_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine(), platform.machine())
_QEMU = {"arm64": "qemu-aarch64"}


def container_devices(cfg: dict) -> list[dict]:
    return [dev for dev in cfg.get("devices", []) if devices.is_container(dev)]


def container_name(dev: dict) -> str:
    """``edgeops-<device>``, or ``edgeops-<stack>-<device>`` for a named stack (the tests' own, beside the user's)."""
    stack = load_stack().get("name", "")
    return "edgeops-" + (f"{stack}-" if stack else "") + dev["name"].replace("_", "-")


def log_file(dev: dict) -> Path:
    return LOGS / f"sshd-{dev['name']}.log"


def _docker(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise DevstackError(f"`docker {' '.join(args[:2])}` did not answer in {timeout:.0f}s") from exc


def engine_problem() -> str | None:
    """Why container devices cannot run here (None if docker answers)."""
    if not shutil.which("docker"):
        return f"the docker CLI is not installed; install and start the engine with {ENGINE_HINT}"
    try:
        info = _docker("info", "--format", "{{.ServerVersion}}", timeout=20)
    except DevstackError as exc:
        return f"{exc}; (re)start the engine with {ENGINE_HINT}"
    if info.returncode != 0 or not info.stdout.strip():
        why = (info.stderr.strip().splitlines() or ["no answer"])[-1]
        return f"no container engine answers ({why}); start it with {ENGINE_HINT}"
    return None


def _binfmt_problem(arch: str) -> str | None:
    if arch == _HOST_ARCH or arch not in _QEMU:
        return None
    entry = Path("/proc/sys/fs/binfmt_misc") / _QEMU[arch]
    try:
        text = entry.read_text()
    except OSError:
        return f"{entry} is missing: {arch} binaries cannot run here; register qemu with {ENGINE_HINT}"
    flags = next((line.split(":", 1)[1] for line in text.splitlines() if line.startswith("flags:")), "")
    if not text.startswith("enabled") or "F" not in flags:
        return f"{entry} is not enabled with flag F (containers need it); re-register with {ENGINE_HINT}"
    return None


def _state(dev: dict) -> dict | None:
    """docker's .State of the device's container; None if there is none (or no engine)."""
    if not shutil.which("docker"):
        return None
    try:
        out = _docker("inspect", "--type", "container", "--format", "{{json .State}}", container_name(dev), timeout=20)
    except DevstackError:
        return None
    if out.returncode != 0:
        return None
    try:
        return json.loads(out.stdout)
    except ValueError:
        return None


def is_up(dev: dict) -> bool:
    state = _state(dev)
    return bool(state and state.get("Running")) and port_open(dev["host"], dev["port"])


def describe(dev: dict) -> dict:
    return {
        **devices.describe(dev, login=LOGIN),
        "kind": dev["kind"],
        "arch": dev.get("arch"),
        "image": dev.get("image"),
        "container": container_name(dev),
    }


def connection(dev: dict) -> dict:
    return devices.connection(dev, describe(dev))


def _image_ok(dev: dict) -> None:
    image = dev.get("image")
    if not image:
        raise DevstackError(f"device {dev['name']}: config/stack.json gives no \"image\"")
    out = _docker("image", "inspect", "--format", "{{.Architecture}}", image)
    if out.returncode != 0:
        raise DevstackError(
            f"device {dev['name']}: image {image} does not exist; build it (no registry needed) with: {IMAGE_HINT}"
        )
    arch = dev.get("arch")
    if arch and out.stdout.strip() != arch:
        raise DevstackError(
            f"device {dev['name']}: image {image} is recorded as {out.stdout.strip()}, config says {arch}; "
            f"rebuild it with: {IMAGE_HINT} --rebuild"
        )


def _in_image(dev: dict, *argv: str) -> subprocess.CompletedProcess:
    """Run a one-off command in the device image (under qemu), with the device dir mounted."""
    d = str(devices.device_dir(dev["name"]))
    return _docker(
        "run", "--rm", "--network", "host", "--tmpfs", "/sys/devices/system/cpu", "-v", f"{d}:{d}",
        dev["image"], *argv, timeout=120,
    )


def _remove(dev: dict) -> None:
    _docker("stop", "-t", "5", container_name(dev), timeout=60)
    _docker("rm", "-f", container_name(dev), timeout=60)


def _start(dev: dict, config: Path) -> float:
    name, d, log = dev["name"], str(devices.device_dir(dev["name"])), log_file(dev)
    LOGS.mkdir(parents=True, exist_ok=True)
    log.touch()
    with open(log, "a") as fh:
        fh.write(f"\n=== devstack {time.strftime('%Y-%m-%dT%H:%M:%S')} start container {container_name(dev)}\n")
    sshd = f"mkdir -p /run/sshd && chmod 0755 /run/sshd && exec /usr/sbin/sshd -D -f {config} -E {log}"
    out = _docker(
        "run", "-d", "--name", container_name(dev), "--network", "host",
        "--tmpfs", "/sys/devices/system/cpu",  # LiteRT segfaults under qemu when it can read the host CPU topology
        "--label", f"{LABEL}={name}", "-v", f"{d}:{d}", "-v", f"{log}:{log}",
        dev["image"], "/bin/sh", "-c", sshd,
    )
    if out.returncode != 0:
        raise DevstackError(f"device {name}: docker run failed:\n{out.stderr.strip()}")
    start = time.monotonic()
    while time.monotonic() - start < 60:
        if port_open(dev["host"], dev["port"]):
            return time.monotonic() - start
        state = _state(dev) or {}
        if not state.get("Running"):
            logs = _docker("logs", "--tail", "20", container_name(dev)).stderr
            raise DevstackError(
                f"device {name}: container exited with code {state.get('ExitCode')} during startup; "
                f"see {log}\n{tail(log)}\n{logs}"
            )
        time.sleep(0.5)
    raise DevstackError(f"device {name}: sshd in {container_name(dev)} not listening after 60s; see {log}\n{tail(log)}")


def up(cfg: dict) -> None:
    devs = container_devices(cfg)
    if not devs:
        print("containers: config/stack.json has no container devices")
        return
    problem = engine_problem()
    if problem:
        raise DevstackError(f"container devices: {problem}")
    devices._keygen(devices.CLIENT_KEY, "edgeops-devstack-client")
    for dev in devs:
        name = dev["name"]
        problem = _binfmt_problem(dev.get("arch", _HOST_ARCH))
        if problem:
            raise DevstackError(f"device {name}: {problem}")
        _image_ok(dev)
        devices._keygen(devices.host_key_file(name), f"edgeops-device-{name}")
        devices.deploy_root(name).mkdir(parents=True, exist_ok=True)
        version = devices.sshd_version(_in_image(dev, "/usr/sbin/sshd", "-V").stderr)
        config, changed = devices.write_config(dev, login=LOGIN, version=version)
        state = _state(dev)
        if state and state.get("Running") and not changed and port_open(dev["host"], dev["port"]):
            print(f"device {name}: container {container_name(dev)} already running on {dev['host']}:{dev['port']}")
            continue
        if state:
            why = "sshd_config changed" if state.get("Running") else f"it is {state.get('Status')}"
            print(f"device {name}: replacing container {container_name(dev)} ({why})")
            _remove(dev)
        ensure_port_free(dev["host"], dev["port"], f"device {name} sshd")
        test = _in_image(dev, "/bin/sh", "-c", f"mkdir -p /run/sshd && /usr/sbin/sshd -t -f {config}")
        if test.returncode != 0:
            raise DevstackError(f"device {name}: the image's sshd rejects {config}:\n{test.stderr.strip()}")
        took = _start(dev, config)
        print(
            f"device {name}: container {container_name(dev)} ({dev.get('arch')}, {dev['image']}) sshd on "
            f"{dev['host']}:{dev['port']} in {took:.1f}s"
        )
    devices.write_known_hosts(cfg)


def down(cfg: dict) -> None:
    devs = container_devices(cfg)
    if not devs:
        return
    if engine_problem():
        for dev in devs:
            print(f"device {dev['name']}: not running (no container engine)")
        return
    for dev in devs:
        if _state(dev) is None:
            print(f"device {dev['name']}: not running")
            continue
        _remove(dev)
        gone = _state(dev) is None
        print(f"device {dev['name']}: {'container stopped and removed' if gone else 'container could NOT be removed'}")


def status(cfg: dict) -> bool:
    """Print each container device; False only if a non-optional one is down."""
    ok = True
    for dev in container_devices(cfg):
        state = _state(dev)
        listening = port_open(dev["host"], dev["port"])
        if state and state.get("Running"):
            text = "up" if listening else "NOT LISTENING"
        elif state:
            text = f"down (container {state.get('Status')})"
        else:
            text = "down"
        optional = dev.get("optional", False)
        hint = "" if text == "up" else "  (start: up --with-containers)"
        print(
            f"device {dev['name']}: {text}  {dev['host']}:{dev['port']}  {dev.get('kind')} {dev.get('arch')} "
            f"container {container_name(dev)}{' optional' if optional else ''}{hint}"
        )
        if text == "up":
            print(f"  shell:   {devices.ssh_command(dev, login=LOGIN)}")
        ok = ok and (text == "up" or optional)
    return ok
