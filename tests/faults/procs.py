"""Real processes the fault cases own and may break: sshd devices, a MinIO server, a cutting TCP proxy.

Nothing here touches the shared dev stack: every process gets its own free loopback port and data dir, and is
stopped by its own pid. The sshd config follows scripts/devstack/devices.py (same client key, key-only auth).
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scripts.devstack import devices
from scripts.devstack.common import cache_dir, http_ok, load_stack, port_open


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(check: Any, what: str, proc: subprocess.Popen, log: Path, timeout: float = 30) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}: {log.read_text()[-2000:]}")
        time.sleep(0.1)
    raise RuntimeError(f"{what} not ready after {timeout}s: {log.read_text()[-2000:]}")


def _stop(proc: subprocess.Popen | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.kill()
        proc.wait(timeout=10)


@dataclass
class Sshd:
    """One simulated device: an sshd on a free port whose deploy root is ``root``."""

    name: str
    home: Path
    root: Path
    runtime_root: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    @property
    def log(self) -> Path:
        return self.home / "sshd.log"

    @property
    def host_key(self) -> str:
        return devices.public_key(self.home / "ssh_host_ed25519_key")

    def start(self) -> Sshd:
        sshd = devices.ensure_sshd()
        self.home.mkdir(parents=True, exist_ok=True)
        self.root.mkdir(parents=True, exist_ok=True)
        devices._keygen(self.home / "ssh_host_ed25519_key", f"edgeops-fault-{self.name}")
        (self.home / "authorized_keys").write_text(devices.public_key(devices.CLIENT_KEY) + " edgeops-faults\n")
        lines = [f"ListenAddress 127.0.0.1:{self.port}", f"HostKey {self.home / 'ssh_host_ed25519_key'}",
                 f"PidFile {self.home / 'sshd.pid'}", f"AuthorizedKeysFile {self.home / 'authorized_keys'}",
                 f"AllowUsers {devices.user()}", "PubkeyAuthentication yes", "AuthenticationMethods publickey",
                 "PasswordAuthentication no", "KbdInteractiveAuthentication no", "PermitRootLogin prohibit-password",
                 "UsePAM no", "StrictModes no", "LogLevel INFO", "MaxStartups 50:30:100",
                 "Subsystem sftp internal-sftp"]
        if devices.sshd_version() >= (9, 8):
            lines.append("PerSourcePenalties no")
        (self.home / "sshd_config").write_text("\n".join(lines) + "\n")
        Path("/run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)
        self.proc = subprocess.Popen([sshd, "-D", "-f", str(self.home / "sshd_config"), "-E", str(self.log)],
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        _wait(lambda: port_open("127.0.0.1", self.port), f"sshd {self.name}", self.proc, self.log)
        return self

    def stop(self) -> None:
        _stop(self.proc)

    def connection(self, port: int | None = None, **extra: Any) -> dict[str, Any]:
        """An Airflow connection for this device (through ``port`` when a proxy sits in front)."""
        return {"conn_type": "ssh", "host": "127.0.0.1", "port": port or self.port, "login": devices.user(),
                "extra": {"key_file": str(devices.CLIENT_KEY), "host_key": self.host_key, "deploy_root": str(self.root),
                          "runtime_root": str(self.runtime_root), "python": devices.DEVICE_PYTHON, **extra}}

    def accepted_logins(self) -> int:
        return self.log.read_text(errors="replace").count("Accepted publickey")


@dataclass
class Minio:
    """A private MinIO server (the cached binary, another port and data dir): the one fault cases may kill."""

    data: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None
    user: str = "faults"
    secret: str = "faults-secret-key"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Minio:
        exe = cache_dir() / "bin" / f"minio-{load_stack()['minio']['module_version']}"
        self.data.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, MINIO_ROOT_USER=self.user, MINIO_ROOT_PASSWORD=self.secret, MINIO_UPDATE="off",
                   MINIO_BROWSER="off")
        log = self.data.parent / "minio.log"
        with open(log, "ab") as out:
            self.proc = subprocess.Popen([str(exe), "server", str(self.data), "--address", f"127.0.0.1:{self.port}",
                                          "--console-address", f"127.0.0.1:{free_port()}"],
                                         stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        _wait(lambda: http_ok(self.endpoint + "/minio/health/live"), "private MinIO", self.proc, log, 60)
        return self

    def kill(self) -> None:
        _stop(self.proc)


class CutProxy:
    """A loopback TCP proxy that cuts a connection once ``cut_after`` client->server bytes went through.

    Threads only, bounded: at most ``max_conns`` connections, each pump blocks at most 1 s per read.
    ``cut_after=None`` forwards everything (to measure how many bytes a deploy sends).
    """

    def __init__(self, target_port: int, max_conns: int = 8) -> None:
        self.target_port, self.max_conns = target_port, max_conns
        self.cut_after: int | None = None
        self.sent = 0  # client->server bytes of the current connection
        self.cuts = 0
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.5)
        self.port = self._server.getsockname()[1]
        self._closed = threading.Event()
        self._slots = threading.BoundedSemaphore(max_conns)
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if not self._slots.acquire(blocking=False):
                client.close()
                continue
            self.sent = 0
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            done = threading.Event()
            for src, dst, count in ((client, upstream, True), (upstream, client, False)):
                threading.Thread(target=self._pump, args=(src, dst, count, done, (client, upstream)),
                                 daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, count: bool, done: threading.Event,
              pair: tuple[socket.socket, socket.socket]) -> None:
        src.settimeout(1.0)
        try:
            while not done.is_set() and not self._closed.is_set():
                try:
                    data = src.recv(16384)
                except TimeoutError:
                    continue
                if not data:
                    break
                if count and self.cut_after is not None and self.sent + len(data) >= self.cut_after:
                    dst.sendall(data[: max(0, self.cut_after - self.sent)])
                    self.sent, self.cuts = self.cut_after, self.cuts + 1
                    break
                dst.sendall(data)
                if count:
                    self.sent += len(data)
        except OSError:
            pass
        finally:
            if not done.is_set():
                done.set()
                for s in pair:
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    s.close()
                self._slots.release()

    def close(self) -> None:
        self._closed.set()
        self._server.close()
        self._thread.join(timeout=5)
