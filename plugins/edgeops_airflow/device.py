"""SSH/SFTP client for one edge device (a Raspberry Pi or a simulated one), driven by its Airflow connection.

The connection ``edgeops_device_<name>`` gives host/port/login/key and, in its extra, ``host_key`` (always
pinned: a connection without one, or one that disables the check, is refused before any network I/O),
``deploy_root``, ``python`` and optionally ``kind`` (``pi`` for real hardware).

Airflow and paramiko are imported inside methods: DAG files import this module at parse time.
"""

from __future__ import annotations

import io
import json
import logging
import posixpath
import re
import time
from pathlib import Path
from shlex import quote
from typing import Any

from tasks.exceptions import DeviceError
from tasks.names import device_conn_id
from tasks.storage import sha256_file

log = logging.getLogger(__name__)

RUNTIME_PACKAGES = ("numpy", "ai-edge-litert")
FALLBACK_PACKAGES = ("numpy", "tflite-runtime")
_SAFE = re.compile(r"^[A-Za-z0-9._-]+$")
_CHECK_RUNTIME = (
    "import importlib.metadata as m, json, numpy\n"
    "try:\n    import ai_edge_litert.interpreter; pkg = 'ai-edge-litert'\n"
    "except ImportError:\n    import tflite_runtime.interpreter; pkg = 'tflite-runtime'\n"
    "print(json.dumps({'numpy': m.version('numpy'), pkg: m.version(pkg)}))"
)
_FACTS = (
    "import json, os, platform\n"
    "osr = dict(l.split('=', 1) for l in open('/etc/os-release').read().split(chr(10)) if '=' in l)\n"
    "print(json.dumps({'arch': platform.machine(), 'kernel': platform.release(), 'cpus': os.cpu_count(),\n"
    "  'os': osr.get('PRETTY_NAME', '').strip(chr(34)), 'python': platform.python_version()}))"
)
_VERIFY_SUMS = (
    "import hashlib, sys\nfor line in open(sys.argv[1]):\n    h, n = line.split(None, 1); n = n.strip()\n"
    "    if hashlib.sha256(open(n, 'rb').read()).hexdigest() != h: sys.exit('FAILED: ' + n)"
)


def label_for(kind: str) -> str:
    """How timings on a device of this ``kind`` are labelled: only a real Pi gives Pi numbers."""
    return {"pi": "native", "qemu": "emulated"}.get(kind, "host")


def _safe(name: str, what: str) -> str:
    if not _SAFE.match(name) or name in (".", ".."):
        raise DeviceError(f"{what} {name!r} is not a safe name: use only letters, digits, '.', '_' and '-'")
    return name


class DeviceClient:
    """One SSH session to a device; use as a context manager (``with DeviceClient("pi1") as dev: ...``)."""

    def __init__(self, device: str, conn_id: str | None = None, connect_attempts: int = 3) -> None:
        self.device = device
        self.conn_id = conn_id or device_conn_id(device)
        self.connect_attempts = max(1, connect_attempts)
        self.client: Any = None
        extra = self._extra()
        self.root = str(extra.get("deploy_root") or "")
        self.python = str(extra.get("python") or "/usr/bin/python3")
        self.kind = str(extra.get("kind") or "simulated")
        if not self.root.startswith("/"):
            raise DeviceError(f"{self._who}: extra.deploy_root={self.root!r} must be an absolute path")
        self.venv_python = posixpath.join(self.root, "venv", "bin", "python")

    @property
    def _who(self) -> str:
        return f"device {self.device!r} (connection {self.conn_id})"

    def _extra(self) -> dict[str, Any]:
        from airflow.providers.ssh.hooks.ssh import SSHHook

        try:
            extra = SSHHook.get_connection(self.conn_id).extra_dejson
        except Exception as exc:  # noqa: BLE001 - AirflowNotFoundException and friends
            raise DeviceError(f"{self._who}: connection not found ({exc}); add it or run devstack") from exc
        if not str(extra.get("host_key") or "").strip():
            raise DeviceError(f"{self._who}: extra.host_key is required (pin it: ssh-keyscan -p PORT HOST)")
        for flag in ("no_host_key_check", "allow_host_key_change"):
            if str(extra.get(flag, False)).lower() == "true":
                raise DeviceError(f"{self._who}: extra.{flag}=true is not allowed; host keys are pinned")
        return extra

    # --- connection ---------------------------------------------------------------------------------------
    def connect(self) -> DeviceClient:
        """Connect with the hook; retry refused/reset connections, never a wrong host key or failed auth."""
        import paramiko
        from airflow.providers.ssh.hooks.ssh import SSHHook

        try:  # parses key_file/host_key now; each get_conn() below is a single attempt
            hook = SSHHook(ssh_conn_id=self.conn_id, conn_retry_attempts=1)
        except Exception as exc:  # noqa: BLE001 - ValueError/AirflowException from the connection's fields
            raise DeviceError(f"{self._who}: the connection is invalid: {exc}") from exc
        for attempt in range(1, self.connect_attempts + 1):
            try:
                client = hook.get_conn()
            except paramiko.BadHostKeyException as exc:
                raise DeviceError(
                    f"{self._who}: host key mismatch, refusing to connect ({exc}); if the device "
                    "was re-imaged, update extra.host_key from `ssh-keyscan`"
                ) from exc
            except paramiko.AuthenticationException as exc:
                raise DeviceError(
                    f"{self._who}: authentication failed ({exc}); check login/key_file"
                ) from exc
            except (paramiko.SSHException, OSError) as exc:
                if attempt == self.connect_attempts:
                    raise DeviceError(
                        f"{self._who}: cannot connect after {attempt} attempt(s): {exc}; "
                        "is the device up and sshd listening?"
                    ) from exc
                log.warning("%s: connect attempt %d failed (%s); retrying", self._who, attempt, exc)
                time.sleep(2 * attempt)
                continue
            self._verify_pinned(client, hook.host_key)
            self.client = client
            log.info("%s: connected to %s:%s", self._who, hook.remote_host, hook.port)
            return self
        raise AssertionError("unreachable")

    def _verify_pinned(self, client: Any, pinned: Any) -> None:
        """paramiko prefers ~/.ssh/known_hosts over the hook's pinned key; insist on the pinned one."""
        remote = client.get_transport().get_remote_server_key()
        if pinned is None or remote.get_name() != pinned.get_name() or remote.asbytes() != pinned.asbytes():
            client.close()
            raise DeviceError(
                f"{self._who}: server key {remote.get_name()} {remote.get_base64()[:24]}... is not "
                "the pinned extra.host_key; refusing to use this connection"
            )

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None

    def __enter__(self) -> DeviceClient:
        return self.connect() if self.client is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- remote commands ----------------------------------------------------------------------------------
    def run(
        self,
        command: str,
        timeout: float = 120,
        check: bool = True,
        log_stdout: bool = False,
        what: str = "command",
    ) -> tuple[int, str, str]:
        """Run a shell command; stderr (and stdout if asked) goes to the log line by line as it arrives.

        The command is wrapped in coreutils ``timeout`` when present so a hung process dies on the device too.
        """
        if self.client is None:
            self.connect()
        wrapped = (
            f"if command -v timeout >/dev/null 2>&1; then exec timeout -k 10 {int(timeout)} sh -c "
            f"{quote(command)}; else exec sh -c {quote(command)}; fi"
        )
        log.debug("%s: $ %s", self._who, command)
        try:
            chan = self.client.get_transport().open_session()
            chan.exec_command(wrapped)
            chan.shutdown_write()
        except Exception as exc:  # noqa: BLE001 - paramiko raises SSHException/EOFError/OSError here
            raise DeviceError(f"{self._who}: SSH session failed while starting {what}: {exc}") from exc
        out, err = bytearray(), bytearray()
        pending = {"out": b"", "err": b""}
        deadline = time.monotonic() + timeout + 15

        def pump(stream: str, data: bytes, sink: bytearray, level: int) -> None:
            sink.extend(data)
            *lines, pending[stream] = (pending[stream] + data).split(b"\n")
            for line in lines:
                log.log(level, "[%s] %s", self.device, line.decode(errors="replace"))

        out_level = logging.INFO if log_stdout else logging.DEBUG
        try:
            while True:
                busy = chan.recv_ready() or chan.recv_stderr_ready()
                if chan.recv_ready():
                    pump("out", chan.recv(65536), out, out_level)
                if chan.recv_stderr_ready():
                    pump("err", chan.recv_stderr(65536), err, logging.INFO)
                if (
                    not busy
                    and chan.exit_status_ready()
                    and not (chan.recv_ready() or chan.recv_stderr_ready())
                ):
                    break
                if time.monotonic() > deadline:
                    raise DeviceError(f"{self._who}: {what} timed out after {timeout:.0f}s")
                if not busy:
                    time.sleep(0.02)
            rc = chan.recv_exit_status()
        except DeviceError:
            raise
        except Exception as exc:  # noqa: BLE001 - SSHException/EOFError/OSError: device rebooted, network down
            raise DeviceError(f"{self._who}: SSH connection lost during {what}: {exc}") from exc
        finally:
            chan.close()
        for stream, level in (("out", out_level), ("err", logging.INFO)):
            if pending[stream]:
                log.log(level, "[%s] %s", self.device, pending[stream].decode(errors="replace"))
        stdout, stderr = out.decode(errors="replace"), err.decode(errors="replace")
        if rc == 124:
            raise DeviceError(f"{self._who}: {what} timed out after {timeout:.0f}s on the device")
        if check and rc != 0:
            tail = "\n".join(stderr.strip().splitlines()[-15:]) or stdout.strip()[-1500:]
            raise DeviceError(f"{self._who}: {what} failed with exit {rc}:\n{tail}")
        return rc, stdout, stderr

    def _json(self, command: str, what: str, timeout: float = 60) -> Any:
        _, stdout, _ = self.run(command, timeout=timeout, what=what)
        try:
            return json.loads(stdout.strip().splitlines()[-1])
        except (IndexError, ValueError) as exc:
            raise DeviceError(f"{self._who}: {what} printed no JSON: {stdout[-500:]!r}") from exc

    # --- operations ---------------------------------------------------------------------------------------
    def facts(self) -> dict[str, Any]:
        """arch, kernel, os, python, cpu_count of the device (through its system python)."""
        rc, _, _ = self.run(f"test -x {quote(self.python)}", check=False)
        if rc != 0:
            raise DeviceError(f"{self._who}: {self.python} is missing; install python3 or set extra.python")
        return self._json(f"{quote(self.python)} -c {quote(_FACTS)}", "facts")

    def provision(self, timeout: float = 1800) -> dict[str, Any]:
        """Make ``<root>/venv`` hold numpy + a TFLite runtime; no-op (installed=False) if it already does."""
        check = f"{quote(self.venv_python)} -c {quote(_CHECK_RUNTIME)}"
        venv, pip = posixpath.join(self.root, "venv"), f"{quote(self.venv_python)} -m pip"
        rc, stdout, _ = self.run(check, check=False, what="runtime check")
        if rc == 0:
            log.info("%s: runtime already provisioned: %s", self._who, stdout.strip())
            return {"installed": False, "venv": venv, "packages": json.loads(stdout.strip().splitlines()[-1])}
        log.info("%s: provisioning %s with %s", self._who, venv, " ".join(RUNTIME_PACKAGES))
        self.run(
            f"mkdir -p {quote(self.root)} && {{ test -x {quote(self.venv_python)} || "
            f"{quote(self.python)} -m venv {quote(venv)}; }}",
            what="venv creation (needs python3-venv)",
        )
        install = f"{pip} install --disable-pip-version-check --no-input --progress-bar off"
        rc, _, _ = self.run(f"{install} {' '.join(RUNTIME_PACKAGES)}", timeout, False, True, "pip install")
        if rc != 0:
            log.warning("%s: ai-edge-litert did not install; falling back to tflite-runtime", self._who)
            why = (
                "pip install of ai-edge-litert, then tflite-runtime (no wheel for this arch/python? no PyPI?)"
            )
            self.run(f"{install} {' '.join(FALLBACK_PACKAGES)}", timeout, log_stdout=True, what=why)
        packages = self._json(check, "runtime check after install")
        return {"installed": True, "venv": venv, "packages": packages}

    def deploy(self, run_id: str, files: dict[str, str | Path], current_mode: str) -> dict[str, Any]:
        """Upload a release, verify checksums on the device, then switch ``current`` to it atomically.

        Retries are idempotent: a finished release with identical SHA256SUMS is reused as is.
        """
        _safe(run_id, "run id")
        if f"{current_mode}.tflite" not in files:
            raise DeviceError(f"{self._who}: current mode {current_mode!r} not among files {sorted(files)}")
        entries = []
        for name, path in sorted(files.items()):
            if not Path(path).is_file():
                raise DeviceError(f"{self._who}: local file {path} for {name} is missing")
            size, digest = Path(path).stat().st_size, sha256_file(path)
            entries.append({"name": _safe(name, "file name"), "sha256": digest, "size_bytes": size})
        sums = "".join(f"{e['sha256']}  {e['name']}\n" for e in entries)
        releases = posixpath.join(self.root, "releases")
        final, partial = posixpath.join(releases, run_id), posixpath.join(releases, f"{run_id}.partial")
        previous = self._current_release()
        rc, existing, _ = self.run(f"cat {quote(final)}/SHA256SUMS", check=False)
        if rc == 0 and existing == sums:
            log.info("%s: release %s is already on the device with identical files", self._who, run_id)
            if previous == run_id:  # the switch already happened: report what it replaced back then
                previous = self._json(f"cat {quote(final)}/release.json", "reading release.json")["previous"]
        elif rc == 0 or self.run(f"test -e {quote(final)}", check=False)[0] == 0:
            raise DeviceError(
                f"{self._who}: {final} exists with different content; run ids are immutable, "
                "use a new run id or remove that directory"
            )
        else:
            self._upload(partial, files, sums)
            meta = {"run_id": run_id, "files": entries, "previous": previous, "current_variant": current_mode}
            self._put_text(posixpath.join(partial, "release.json"), json.dumps(meta))
            has_sha256sum = self.run("command -v sha256sum", check=False)[0] == 0
            verify = (
                "sha256sum -c --quiet" if has_sha256sum else f"{quote(self.python)} -c {quote(_VERIFY_SUMS)}"
            )
            self.run(f"cd {quote(partial)} && {verify} SHA256SUMS", what="checksum check (upload corrupted?)")
            self.run(f"mv -T {quote(partial)} {quote(final)}", what="release rename")
        link = f"{current_mode}.tflite"
        self.run(
            f"cd {quote(final)} && ln -sfn {quote(link)} model.tflite.tmp"
            " && mv -T model.tflite.tmp model.tflite"
            f" && cd {quote(self.root)} && ln -sfn {quote('releases/' + run_id)} current.tmp"
            " && mv -T current.tmp current",
            what="switching current",
        )
        log.info("%s: current -> releases/%s, model.tflite -> %s (was %s)", self._who, run_id, link, previous)
        previous = previous if previous != run_id else None
        return {"release": run_id, "previous": previous, "current_variant": current_mode, "files": entries}

    def _current_release(self) -> str | None:
        rc, out, _ = self.run(f"readlink {quote(posixpath.join(self.root, 'current'))}", check=False)
        return posixpath.basename(out.strip()) if rc == 0 and out.strip() else None

    def _upload(self, partial: str, files: dict[str, str | Path], sums: str) -> None:
        self.run(f"rm -rf {quote(partial)} && mkdir -p {quote(partial)}", what="creating the release dir")
        sftp = self.client.open_sftp()
        try:
            for name, path in sorted(files.items()):
                log.info("%s: uploading %s (%d bytes)", self._who, name, Path(path).stat().st_size)
                sftp.put(str(path), posixpath.join(partial, name))
            self._put_text(posixpath.join(partial, "SHA256SUMS"), sums, sftp)
        except OSError as exc:
            raise DeviceError(f"{self._who}: SFTP upload into {partial} failed: {exc}; disk full?") from exc
        finally:
            sftp.close()

    def _put_text(self, remote: str, text: str, sftp: Any = None) -> None:
        own = sftp is None
        sftp = sftp or self.client.open_sftp()
        try:
            sftp.putfo(io.BytesIO(text.encode()), remote)
        except OSError as exc:
            raise DeviceError(f"{self._who}: cannot write {remote}: {exc}") from exc
        finally:
            if own:
                sftp.close()

    def benchmark(
        self, run_id: str, modes: list[str], bench: Any, label: str, timeout: float = 1800
    ) -> dict[str, Any]:
        """Run the release's bench.py with the device venv over the given modes; return its JSON document."""
        release = posixpath.join(self.root, "releases", _safe(run_id, "run id"))
        models = " ".join(f"--model {quote(_safe(m, 'mode') + '.tflite')}" for m in modes)
        command = (
            f"cd {quote(release)} && {quote(self.venv_python)} bench.py {models} --sample sample.npz "
            f"--warmup {int(bench.warmup)} --runs {int(bench.runs)} "
            f"--threads {int(bench.threads)} --label {quote(label)}"
        )
        log.info("%s: benchmarking %s of release %s (%s)", self._who, ", ".join(modes), run_id, label)
        doc = self._json(command, f"benchmark of release {run_id}", timeout=timeout)
        if doc.get("schema") != 1 or not isinstance(doc.get("results"), dict):
            raise DeviceError(f"{self._who}: bench.py printed an unexpected document: {str(doc)[:300]}")
        return doc
