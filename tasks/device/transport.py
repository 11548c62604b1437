"""SSH transport to one edge device: connection fields in, commands and SFTP out (paramiko; no Airflow here).

Trust model (the reason this is not ``SSHHook.get_conn()``): the host key pinned in the connection's
``extra.host_key`` is the ONLY key accepted. The client's key store holds that one key and nothing else (the
worker's ``~/.ssh/known_hosts`` is never loaded), the missing-key policy is ``RejectPolicy``, and paramiko checks
the server key during key exchange, before any credential is sent. Authentication is by private key only:
no password (a connection carrying one is refused), no agent, no ``~/.ssh/id_*`` discovery.

Where the connection comes from is the subclass's ``_lookup``: Airflow's connections on the operators' side
(the Airflow plugin's ``DeviceTransport``), the ``AIRFLOW_CONN_<ID>`` JSON in the environment for the
``edgeops`` CLI (``EnvTransport``). paramiko is imported inside functions: DAG files import the operators at
parse time.

A wrong host key raises ``HostKeyError``, a ``FatalError``: the operators fail the task at once, with no Airflow
retry (a retry would meet the same key).
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
import time
from collections.abc import Generator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from shlex import quote
from typing import Any, Self

from tasks.core.exceptions import DeviceError, DeviceUnreachableError, HostKeyError
from tasks.core.names import device_conn_id
from tasks.device import layout
from tasks.device.records import OnDevice, listing_command, parse_listing

log = logging.getLogger(__name__)
_PY_LOCK = (  # flock(1) stand-in: take the lock within argv[2] seconds, say so, hold it until stdin closes
    "import fcntl, os, sys, time\nf = open(sys.argv[1], 'a'); end = time.time() + float(sys.argv[2])\n"
    "while True:\n    try:\n        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB); break\n"
    "    except BlockingIOError:\n        time.sleep(0.2)\n        if time.time() > end: sys.exit(1)\n"
    "print('locked', os.getpid(), flush=True); sys.stdin.read()"
)


@dataclass(frozen=True)
class ConnectionFields:
    """The fields of an Airflow SSH connection that a device transport reads."""

    host: str
    port: int | None
    login: str
    password: str | None
    extra: dict[str, Any]


class SshTransport:
    """One SSH session to a device; use as a context manager (``with EnvTransport("pi1") as t: ...``).

    Connection fields: host, port, login; extra: ``host_key`` (required), ``key_file`` or ``private_key``
    (required), ``deploy_root`` (absolute), ``python`` (the device's system python), optional ``kind``
    (``pi`` | ``qemu``) and ``runtime_root`` (where pinned runtime venvs live; default ``<deploy_root>/runtimes``).
    """

    def __init__(self, device: str, conn_id: str | None = None, connect_attempts: int = 3) -> None:
        self.device = device
        self.conn_id = conn_id or device_conn_id(device)
        self.connect_attempts = max(1, connect_attempts)
        self.client: Any = None
        conn = self._connection()
        extra = conn.extra
        self.host, self.port, self.login = conn.host or "", int(conn.port or 22), conn.login or ""
        self.root = str(extra.get("deploy_root") or "")
        self.python = str(extra.get("python") or "/usr/bin/python3")
        self.kind = str(extra.get("kind") or "simulated")
        self.runtime_root = str(extra.get("runtime_root") or posixpath.join(self.root, layout.RUNTIMES))
        for what, path in (("deploy_root", self.root), ("runtime_root", self.runtime_root)):
            if not path.startswith("/") or ".." in path.split("/"):
                raise DeviceError(f"{self.who}: extra.{what}={path!r} must be an absolute path without '..'")
        self._host_key = self._parse_host_key(str(extra.get("host_key") or ""))
        self._key_source = (extra.get("private_key"), extra.get("key_file"))
        if not any(self._key_source):
            raise DeviceError(f"{self.who}: extra.key_file (or private_key) is required; key auth only")

    @property
    def who(self) -> str:
        return f"device {self.device!r} (connection {self.conn_id})"

    # --- configuration, all checked before any network I/O ----------------------------------------------------
    def _lookup(self) -> ConnectionFields:
        """The connection ``self.conn_id`` (a DeviceError when there is none)."""
        raise NotImplementedError

    def _connection(self) -> ConnectionFields:
        conn = self._lookup()
        extra = conn.extra
        if conn.password:
            raise DeviceError(f"{self.who}: the connection has a password; remove it, devices use key auth only")
        for flag in ("no_host_key_check", "allow_host_key_change"):
            if str(extra.get(flag, False)).lower() == "true":
                raise DeviceError(f"{self.who}: extra.{flag}=true is not allowed; host keys are pinned")
        if not conn.host or not conn.login:
            raise DeviceError(f"{self.who}: the connection needs host and login")
        return conn

    def _parse_host_key(self, line: str) -> Any:
        from paramiko.hostkeys import HostKeyEntry

        if not line.strip():
            raise DeviceError(f"{self.who}: extra.host_key is required (pin it: ssh-keyscan -p PORT HOST)")
        try:
            entry = HostKeyEntry.from_line(f"pinned {line.strip()}")
        except Exception as exc:  # noqa: BLE001 - paramiko raises several types for a bad key line
            raise DeviceError(f"{self.who}: extra.host_key is not a valid 'TYPE BASE64' key: {exc}") from exc
        if entry is None or entry.key is None:
            raise DeviceError(f"{self.who}: extra.host_key {line[:40]!r}… is not a key type paramiko supports")
        return entry.key

    def _private_key(self) -> Any:
        import io

        import paramiko

        text, path = self._key_source
        try:
            if not text:
                return paramiko.PKey.from_path(str(path))
            for kind in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
                try:
                    return kind.from_private_key(io.StringIO(str(text)))
                except paramiko.SSHException:
                    continue
            raise ValueError("extra.private_key is not an unencrypted ed25519, ecdsa or rsa key")
        except Exception as exc:  # noqa: BLE001 - missing file, bad format, encrypted key
            raise DeviceError(f"{self.who}: cannot load the private key ({exc}); check extra.key_file") from exc

    # --- connection -------------------------------------------------------------------------------------------
    def connect(self) -> Self:
        """Connect; retry refused/reset connections, never a wrong host key or failed auth."""
        import paramiko

        pkey = self._private_key()
        known_as = self.host if self.port == 22 else f"[{self.host}]:{self.port}"
        for attempt in range(1, self.connect_attempts + 1):
            client = paramiko.SSHClient()  # no load_system_host_keys(): the pinned key is the only one
            client.get_host_keys().add(known_as, self._host_key.get_name(), self._host_key)
            client.set_missing_host_key_policy(paramiko.RejectPolicy())
            try:
                client.connect(self.host, self.port, username=self.login, pkey=pkey, look_for_keys=False,
                               allow_agent=False, timeout=15, banner_timeout=15, auth_timeout=15)
            except paramiko.BadHostKeyException as exc:
                client.close()
                raise HostKeyError(f"{self.who}: host key mismatch, refusing to connect ({exc}); if the device "
                                  "was re-imaged, update extra.host_key from the device itself") from exc
            except paramiko.AuthenticationException as exc:
                client.close()
                raise DeviceError(f"{self.who}: authentication failed ({exc}); check login/key_file") from exc
            except paramiko.SSHException as exc:
                client.close()
                if "not found in known_hosts" in str(exc):  # RejectPolicy: the server offered another key type
                    raise HostKeyError(f"{self.who}: the server's host key type is not the pinned one ({exc}); "
                                      "refusing to connect") from exc
                self._retry_or_fail(attempt, exc)
                continue
            except OSError as exc:
                client.close()
                self._retry_or_fail(attempt, exc)
                continue
            self.client = client
            log.info("%s: connected to %s:%s (pinned %s key)", self.who, self.host, self.port,
                     self._host_key.get_name())
            return self
        raise AssertionError("unreachable")

    def _retry_or_fail(self, attempt: int, exc: Exception) -> None:
        if attempt == self.connect_attempts:
            raise DeviceUnreachableError(f"{self.who}: cannot connect after {attempt} attempt(s): {exc}; "
                                         "is the device up and sshd listening?") from exc
        log.warning("%s: connect attempt %d failed (%s); retrying", self.who, attempt, exc)
        time.sleep(2 * attempt)

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None

    def __enter__(self) -> Self:
        return self.connect() if self.client is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- commands ---------------------------------------------------------------------------------------------
    def open_command(self, command: str) -> Any:
        """Start a command and return its channel (for long-lived helpers such as the deploy lock)."""
        if self.client is None:
            self.connect()
        try:
            chan = self.client.get_transport().open_session()
            chan.exec_command(command)
            return chan
        except Exception as exc:  # noqa: BLE001 - paramiko raises SSHException/EOFError/OSError here
            raise DeviceError(f"{self.who}: SSH session failed while starting a command: {exc}") from exc

    def run(self, command: str, timeout: float = 120, check: bool = True, log_stdout: bool = False,
            what: str = "command") -> tuple[int, str, str]:
        """Run a shell command; stderr (and stdout if asked) goes to the log line by line as it arrives.

        The command is wrapped in coreutils ``timeout`` when present so a hung process dies on the device too.
        """
        wrapped = (f"if command -v timeout >/dev/null 2>&1; then exec timeout -k 10 {int(timeout)} sh -c "
                   f"{quote(command)}; else exec sh -c {quote(command)}; fi")
        log.debug("%s: $ %s", self.who, command)
        chan = self.open_command(wrapped)
        out_level = logging.INFO if log_stdout else logging.DEBUG
        try:
            chan.shutdown_write()
            rc, stdout, stderr = _pump(chan, self.device, out_level, time.monotonic() + timeout + 15)
        except TimeoutError as exc:
            raise DeviceError(f"{self.who}: {what} timed out after {timeout:.0f}s") from exc
        except Exception as exc:  # noqa: BLE001 - SSHException/EOFError/OSError: device rebooted, network down
            raise DeviceError(f"{self.who}: SSH connection lost during {what}: {exc}") from exc
        finally:
            chan.close()
        if rc == 124:
            raise DeviceError(f"{self.who}: {what} timed out after {timeout:.0f}s on the device")
        if check and rc != 0:
            tail = "\n".join(stderr.strip().splitlines()[-15:]) or stdout.strip()[-1500:]
            raise DeviceError(f"{self.who}: {what} failed with exit {rc}:\n{tail}")
        return rc, stdout, stderr

    def json(self, command: str, what: str, timeout: float = 60) -> Any:
        _, stdout, _ = self.run(command, timeout=timeout, what=what)
        try:
            return json.loads(stdout.strip().splitlines()[-1])
        except (IndexError, ValueError) as exc:
            raise DeviceError(f"{self.who}: {what} printed no JSON: {stdout[-500:]!r}") from exc

    @contextmanager
    def locked(self, directory: str, wait_s: int) -> Generator[int, None, None]:
        """Hold ``<directory>/.lock`` on the device for the block: ``flock`` run by a helper that lives as long
        as this channel, so a dropped connection frees the lock (python's fcntl where flock(1) is absent)."""
        lock, wait = quote(posixpath.join(directory, layout.LOCK)), int(wait_s)
        command = (f"mkdir -p {quote(directory)} && if command -v flock >/dev/null 2>&1; then exec flock -w {wait} "
                   f"{lock} sh -c 'echo locked $$; exec cat >/dev/null'; else exec {quote(self.python)} -c "
                   f"{quote(_PY_LOCK)} {lock} {wait}; fi")
        from paramiko import SSHException

        chan = self.open_command(command)
        try:
            yield self._await_lock(chan, directory, wait)
        finally:
            try:
                chan.shutdown_write()  # EOF to the holder: it exits and the lock is free
            except (EOFError, OSError, SSHException) as exc:  # connection gone: so is the holder, and the lock
                log.warning("%s: connection lost while releasing the lock (%r); the device frees it", self.who, exc)
            quiet_close(chan, self.who)

    def _await_lock(self, chan: Any, directory: str, wait: int) -> int:
        """Wait for the helper's ``locked <pid>`` line; return that pid (it lives exactly as long as the lock)."""
        deadline, seen = time.monotonic() + wait + 15, b""
        while not (b"locked" in seen and seen.endswith(b"\n")):
            if chan.recv_ready():
                seen += chan.recv(64)
            elif chan.exit_status_ready() or chan.closed:
                raise DeviceError(f"{self.who}: could not lock {directory} within {wait}s: another deploy "
                                  f"holds it (or the lock helper failed: exit {chan.recv_exit_status()})")
            elif time.monotonic() > deadline:
                raise DeviceError(f"{self.who}: no answer from the lock helper on {directory}")
            else:
                time.sleep(0.05)
        return int(seen.split()[-1])

    def on_device(self) -> OnDevice:
        """What the device itself keeps: the release ``current`` points at and its releases, newest first."""
        _, out, _ = self.run(listing_command(self.root), 30, check=False, what="reading current and the kept releases")
        return parse_listing(out)

    # --- files ------------------------------------------------------------------------------------------------
    def put_files(self, remote_dir: str, files: dict[str, str | Path], texts: dict[str, str],
                  timeout: float) -> None:
        """Upload local files and small texts into an existing remote dir over one SFTP session."""
        import io

        if self.client is None:
            self.connect()
        try:
            sftp = self.client.open_sftp()
        except Exception as exc:  # noqa: BLE001
            raise DeviceError(f"{self.who}: cannot open SFTP: {exc}") from exc
        sftp.get_channel().settimeout(timeout)
        current = ""
        try:
            for name, path in sorted(files.items()):
                current = name
                log.info("%s: uploading %s (%d bytes)", self.who, name, Path(path).stat().st_size)
                sftp.put(str(path), posixpath.join(remote_dir, name))
            for name, text in sorted(texts.items()):
                current = name
                sftp.putfo(io.BytesIO(text.encode()), posixpath.join(remote_dir, name))
        except Exception as exc:  # noqa: BLE001 - OSError (disk full: SFTP 'Failure'), SSHException, EOFError
            raise DeviceError(f"{self.who}: SFTP upload of {current} into {remote_dir} failed: "
                              f"{type(exc).__name__}: {exc}") from exc
        finally:
            quiet_close(sftp, self.who)


def quiet_close(handle: Any, who: str) -> None:
    """Close a channel or SFTP session in a ``finally``: on a dead connection paramiko's close raises EOFError,
    which would replace the error that ended the block (e.g. the upload failure the caller must see)."""
    try:
        handle.close()
    except Exception as exc:  # noqa: BLE001 - EOFError, OSError, SSHException: the connection is gone either way
        log.debug("%s: close on a lost connection: %r", who, exc)


def _pump(chan: Any, device: str, out_level: int, deadline: float) -> tuple[int, str, str]:
    """Read a channel to its end, logging whole lines as they arrive; TimeoutError past the deadline."""
    out, err = bytearray(), bytearray()
    pending = {"out": b"", "err": b""}

    def feed(stream: str, data: bytes, sink: bytearray, level: int) -> None:
        sink.extend(data)
        *lines, pending[stream] = (pending[stream] + data).split(b"\n")
        for line in lines:
            log.log(level, "[%s] %s", device, line.decode(errors="replace"))

    while True:
        busy = chan.recv_ready() or chan.recv_stderr_ready()
        if chan.recv_ready():
            feed("out", chan.recv(65536), out, out_level)
        if chan.recv_stderr_ready():
            feed("err", chan.recv_stderr(65536), err, logging.INFO)
        if not busy and chan.exit_status_ready() and not (chan.recv_ready() or chan.recv_stderr_ready()):
            break
        if chan.closed and not busy and not chan.exit_status_ready():
            raise EOFError("channel closed without an exit status")
        if time.monotonic() > deadline:
            raise TimeoutError
        if not busy:
            time.sleep(0.02)
    rc = chan.recv_exit_status()
    for stream, level in (("out", out_level), ("err", logging.INFO)):
        if pending[stream]:
            log.log(level, "[%s] %s", device, pending[stream].decode(errors="replace"))
    return rc, out.decode(errors="replace"), err.decode(errors="replace")


class EnvTransport(SshTransport):
    """A transport whose connection is the ``AIRFLOW_CONN_<ID>`` JSON in the environment, as Airflow itself reads
    it (``eval $(.venv/bin/python -m scripts.devstack env --shell)`` exports the dev stack's): for the
    ``edgeops`` CLI, which runs without Airflow."""

    def _lookup(self) -> ConnectionFields:
        var = f"AIRFLOW_CONN_{self.conn_id.upper()}"
        raw = os.environ.get(var, "")
        if not raw:
            raise DeviceError(f"{self.who}: ${var} is not set; export the device connections (eval $(.venv/bin/"
                              "python -m scripts.devstack env --shell)) or fix the connection in the fleet file")
        try:
            conn = json.loads(raw)
            extra = conn.get("extra", {})
            extra = json.loads(extra) if isinstance(extra, str) else extra
            return ConnectionFields(host=str(conn.get("host", "")), port=conn.get("port"),
                                    login=str(conn.get("login", "")), password=conn.get("password"),
                                    extra=dict(extra))
        except (ValueError, TypeError, AttributeError) as exc:
            raise DeviceError(f"{self.who}: ${var} is not an Airflow JSON connection ({exc}); export it as JSON "
                              "(conn_type, host, port, login, extra)") from None
