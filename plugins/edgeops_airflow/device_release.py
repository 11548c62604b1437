"""Release operations on one device: provision the runtime, deploy, roll back, benchmark.

Deploy protocol (every step runs on the device, all of it under one lock):

1. Lock: ``flock <root>/.lock`` is held for the whole deploy by a helper process on the device that lives as
   long as our SSH channel (a dropped connection releases it). Concurrent deploys to one device serialize; a
   second attempt of the same release waits, then finds it done (reused) or redoes it cleanly. Staging dirs
   left by dead attempts are removed first (nobody else can be staging while we hold the lock).
2. Stage: upload into a unique ``<root>/.staging/<uuid>/`` (never a name derived from the release id), then
   ``sha256sum -c SHA256SUMS`` on the device (a python fallback when sha256sum is absent), then ``sync``.
3. Smoke test in the staging dir with the device runtime: the shipped ``bench.py --smoke`` loads every
   variant in its own process, runs one invoke on one sample image, and checks the output shape and that all
   values are finite. A failure stops the deploy here: the model never becomes ``current``.
4. Rename the staging dir to ``releases/<release_id>/``, switch ``current`` (a new symlink renamed over the
   old one, atomic), ``sync``.
5. Health check through ``current`` (checksums + smoke test of ``model.tflite``), also when an earlier
   attempt already switched. On failure ``current`` is switched back to the previous release (``sync``
   again) and the deploy fails naming both releases.
6. Prune: keep the newest ``deploy.keep_releases`` releases, never deleting ``current`` or the previous one.

An identical release already on the device (same SHA256SUMS and current variant) is reused; a different one
under the same id raises ``ReleaseConflictError`` (fatal: never retried). ``rollback(to_release)`` verifies the
target, switches, and runs the same health check with the same automatic switch-back.
"""

from __future__ import annotations

import json
import logging
import posixpath
import re
import time
import uuid
from collections.abc import Generator
from contextlib import contextmanager
from pathlib import Path
from shlex import quote
from typing import Any

from edgeops_airflow.device_transport import DeviceTransport
from tasks.config import BenchConfig, DeployConfig
from tasks.device.runtime import FALLBACK_PACKAGES, READY_MARKER, RUNTIME_PACKAGES, runtime_key
from tasks.exceptions import DeviceError, ReleaseConflictError
from tasks.storage import sha256_file

log = logging.getLogger(__name__)

_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
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
_PY_LOCK = (  # flock(1) stand-in: take the lock within argv[2] seconds, say so, hold it until stdin closes
    "import fcntl, sys, time\nf = open(sys.argv[1], 'a'); end = time.time() + float(sys.argv[2])\n"
    "while True:\n    try:\n        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB); break\n"
    "    except BlockingIOError:\n        time.sleep(0.2)\n        if time.time() > end: sys.exit(1)\n"
    "print('locked', flush=True); sys.stdin.read()"
)


def safe_name(name: str, what: str) -> str:
    """Release ids, modes and file names become device paths: no '/', no leading '.' or '-', no spaces."""
    if not _SAFE.fullmatch(name):
        raise ReleaseConflictError(f"{what} {name!r} is not a safe name: start with a letter or digit, then use "
                                   "only letters, digits, '.', '_' and '-'")
    return name


class DeviceReleases:
    """Release operations over one connected ``DeviceTransport``; knobs come from ``DeployConfig``."""

    def __init__(self, transport: DeviceTransport, deploy: DeployConfig) -> None:
        self.t, self.cfg = transport, deploy
        self.root = transport.root
        self.runtime_dir = posixpath.join(transport.runtime_root, runtime_key())
        self.venv_python = posixpath.join(self.runtime_dir, "bin", "python")

    def _run(self, command: str, what: str, check: bool = True, timeout: float | None = None) -> tuple[int, str]:
        rc, out, _ = self.t.run(command, timeout or self.cfg.command_timeout_s, check=check, what=what)
        return rc, out

    # --- lock -------------------------------------------------------------------------------------------------
    @contextmanager
    def locked(self, directory: str) -> Generator[None, None, None]:
        """Hold ``<directory>/.lock`` on the device for the duration of the block (see the protocol, step 1)."""
        lock, wait = quote(posixpath.join(directory, ".lock")), int(self.cfg.lock_timeout_s)
        command = (f"mkdir -p {quote(directory)} && if command -v flock >/dev/null 2>&1; then exec flock -w {wait} "
                   f"{lock} sh -c 'echo locked; exec cat >/dev/null'; else exec {quote(self.t.python)} -c "
                   f"{quote(_PY_LOCK)} {lock} {wait}; fi")
        chan = self.t.open_command(command)
        try:
            self._await_lock(chan, directory, wait)
            yield
        finally:
            try:
                chan.shutdown_write()  # EOF to the holder: it exits and the lock is free
            finally:
                chan.close()

    def _await_lock(self, chan: Any, directory: str, wait: int) -> None:
        deadline, seen = time.monotonic() + wait + 15, b""
        while b"locked" not in seen:
            if chan.recv_ready():
                seen += chan.recv(64)
            elif chan.exit_status_ready() or chan.closed:
                raise DeviceError(f"{self.t.who}: could not lock {directory} within {wait}s: another deploy "
                                  f"holds it (or the lock helper failed: exit {chan.recv_exit_status()})")
            elif time.monotonic() > deadline:
                raise DeviceError(f"{self.t.who}: no answer from the lock helper on {directory}")
            else:
                time.sleep(0.05)

    # --- runtime ----------------------------------------------------------------------------------------------
    def facts(self) -> dict[str, Any]:
        """arch, kernel, os, python, cpus of the device (through its system python)."""
        if self._run(f"test -x {quote(self.t.python)}", "python check", check=False)[0] != 0:
            raise DeviceError(f"{self.t.who}: {self.t.python} is missing; install python3 or set extra.python")
        return self.t.json(f"{quote(self.t.python)} -c {quote(_FACTS)}", "facts", self.cfg.command_timeout_s)

    def provision(self) -> dict[str, Any]:
        """Make the pinned runtime venv; a no-op when its ready marker is there and it imports.

        The marker is written last, so a venv killed half-way (no marker) is removed and rebuilt.
        """
        venv, marker = quote(self.runtime_dir), quote(posixpath.join(self.runtime_dir, READY_MARKER))
        check = f"test -f {marker} && {quote(self.venv_python)} -c {quote(_CHECK_RUNTIME)}"
        with self.locked(self.t.runtime_root):
            rc, out = self._run(check, "runtime check", check=False)
            if rc == 0:
                return {"installed": False, "venv": self.runtime_dir, "packages": json.loads(out.splitlines()[-1])}
            log.info("%s: building runtime %s: %s", self.t.who, self.runtime_dir, " ".join(RUNTIME_PACKAGES))
            self._run(f"rm -rf {venv} && {quote(self.t.python)} -m venv {venv}", "venv creation (needs python3-venv)")
            started, budget = time.monotonic(), self.cfg.provision_timeout_s
            installed = RUNTIME_PACKAGES
            pip = (f"{quote(self.venv_python)} -m pip install --disable-pip-version-check --no-input "
                   "--progress-bar off --only-binary=:all:")
            rc, _, _ = self.t.run(f"{pip} {' '.join(map(quote, installed))}", budget, False, True, "pip install")
            if rc != 0:
                log.warning("%s: the pinned ai-edge-litert set did not install; trying tflite-runtime", self.t.who)
                installed, left = FALLBACK_PACKAGES, max(10.0, budget - (time.monotonic() - started))
                self.t.run(f"{pip} {' '.join(map(quote, installed))}", left, log_stdout=True,
                           what="pip install of the pinned runtime (no wheel for this arch/python? PyPI reachable?)")
            packages = self.t.json(f"{quote(self.venv_python)} -c {quote(_CHECK_RUNTIME)}", "runtime check",
                                   self.cfg.command_timeout_s)
            spec = quote("\n".join(installed) + "\n")
            self._run(f"printf %s {spec} > {marker}.tmp && sync && mv {marker}.tmp {marker} && sync",
                      "writing the runtime marker")
        return {"installed": True, "venv": self.runtime_dir, "packages": packages}

    # --- deploy -----------------------------------------------------------------------------------------------
    def deploy(self, release_id: str, files: dict[str, str | Path], current_mode: str) -> dict[str, Any]:
        """Run the deploy protocol (module docstring) for one release; returns release/previous/files/reused."""
        safe_name(release_id, "release id")
        link = f"{safe_name(current_mode, 'mode')}.tflite"
        if link not in files or "bench.py" not in files or "sample.npz" not in files:
            raise ReleaseConflictError(f"{self.t.who}: a release needs {link}, bench.py and sample.npz; got "
                                       f"{sorted(files)}")
        entries = []
        for name, path in sorted(files.items()):
            if not Path(path).is_file():
                raise DeviceError(f"{self.t.who}: local file {path} for {name} is missing")
            entries.append({"name": safe_name(name, "file name"), "sha256": sha256_file(path),
                            "size_bytes": Path(path).stat().st_size})
        sums = "".join(f"{e['sha256']}  {e['name']}\n" for e in entries)
        final = posixpath.join(self.root, "releases", release_id)
        with self.locked(self.root):
            self._run(f"rm -rf {quote(self.root)}/.staging && mkdir -p {quote(self.root)}/releases",
                      "removing stale staging dirs")
            previous = self.current_release()
            reused = self._existing(final, sums, link)
            if not reused:
                meta = {"release": release_id, "files": entries, "previous": previous, "current_variant": current_mode}
                self._stage_and_rename(final, files, sums, link, meta)
            elif previous == release_id:  # an earlier attempt switched already: report what it replaced
                previous = self.t.json(f"cat {quote(final)}/release.json", "reading release.json")["previous"]
            if self.current_release() != release_id:
                self._switch(release_id)
            self._health_or_switch_back(release_id, previous)  # also when an earlier attempt switched
            self._prune(keep={release_id, previous})
        log.info("%s: current -> releases/%s [%s] (was %s)", self.t.who, release_id, link, previous)
        previous = previous if previous != release_id else None
        return {"release": release_id, "previous": previous, "current_variant": current_mode, "files": entries,
                "reused": reused}

    def _existing(self, final: str, sums: str, link: str) -> bool:
        """True if ``final`` holds this very release; ReleaseConflictError if it holds another one."""
        if self._run(f"test -e {quote(final)}", "release check", check=False)[0] != 0:
            return False
        rc, existing = self._run(f"cat {quote(final)}/SHA256SUMS && readlink {quote(final)}/model.tflite",
                                 "reading the existing release", check=False)
        if rc == 0 and existing == sums + link + "\n":
            log.info("%s: %s is already on the device with identical files; reusing it", self.t.who, final)
            return True
        raise ReleaseConflictError(
            f"{self.t.who}: {final} already exists with different content (or another current variant); "
            "release ids are immutable: deploy under a new run id, or remove that directory on the device")

    def _stage_and_rename(self, final: str, files: dict[str, str | Path], sums: str, link: str,
                          meta: dict[str, Any]) -> None:
        staging = posixpath.join(self.root, ".staging", uuid.uuid4().hex)
        try:
            self._run(f"mkdir -p {quote(staging)}", "creating the staging dir")
            self.t.put_files(staging, files, {"SHA256SUMS": sums, "release.json": json.dumps(meta)},
                             self.cfg.upload_timeout_s)
            self._verify(staging, "checksum check of the upload")
            self._run(f"cd {quote(staging)} && ln -s {quote(link)} model.tflite && sync", "model link + sync")
            self._smoke(staging, sorted(n for n in files if n.endswith(".tflite")), "smoke test in staging")
            self._run(f"mv -T {quote(staging)} {quote(final)} && sync", "release rename")
        except DeviceError as exc:
            self._cleanup(staging, exc)
            raise

    def _cleanup(self, staging: str, exc: DeviceError) -> None:
        """Remove a failed attempt's staging dir (best effort: the connection may be gone) and add disk facts."""
        try:
            _, free = self._run(f"df -Pk {quote(self.root)} | tail -1", "df", check=False)
            self._run(f"rm -rf {quote(staging)}", "removing the staging dir", check=False)
            parts = free.split()
            if len(parts) >= 4 and parts[3].isdigit() and int(parts[3]) < 1024:
                exc.args = (f"{exc.args[0]}\ndevice disk full: {parts[3]} KiB free on {self.root}; "
                            "free space there (old releases, logs) and retry",)
        except DeviceError:
            log.warning("%s: could not clean %s (the next deploy removes it)", self.t.who, staging)

    def _verify(self, directory: str, what: str) -> None:
        verify = (f"if command -v sha256sum >/dev/null 2>&1; then sha256sum -c --quiet SHA256SUMS; "
                  f"else {quote(self.t.python)} -c {quote(_VERIFY_SUMS)} SHA256SUMS; fi")
        self._run(f"cd {quote(directory)} && {verify}", f"{what} (corrupted on the way or on disk?)")

    def _smoke(self, directory: str, models: list[str], what: str) -> None:
        args = " ".join(f"--model {quote(m)}" for m in models)
        command = (f"cd {quote(directory)} && {quote(self.venv_python)} bench.py --smoke {args} --sample sample.npz "
                   f"--timeout {int(self.cfg.smoke_timeout_s)}")
        rc, out, err = self.t.run(command, self.cfg.smoke_timeout_s * max(1, len(models)), False, what=what)
        if rc != 0:
            try:
                failed = {k: v["why"] for k, v in json.loads(out.strip().splitlines()[-1])["smoke"].items()
                          if not v["ok"]}
            except (IndexError, ValueError, KeyError, TypeError):
                failed = {"bench.py": f"exit {rc}: " + " | ".join(err.strip().splitlines()[-5:])}
            raise DeviceError(f"{self.t.who}: {what} failed: {failed}")

    # --- switch, health, rollback -----------------------------------------------------------------------------
    def current_release(self) -> str | None:
        rc, out = self._run(f"readlink {quote(posixpath.join(self.root, 'current'))}", "readlink", check=False)
        return posixpath.basename(out.strip()) if rc == 0 and out.strip() else None

    def _switch(self, release_id: str | None) -> None:
        root = quote(self.root)
        if release_id is None:
            self._run(f"rm -f {root}/current && sync", "removing current")
            return
        target = quote(f"releases/{release_id}")
        self._run(f"cd {root} && touch -h {target} && ln -sfn {target} .current.tmp && mv -T .current.tmp current "
                  "&& sync", f"switching current to {release_id}")

    def _health(self) -> None:
        current = posixpath.join(self.root, "current")
        self._verify(current, "health check: checksums through current")
        self._smoke(current, ["model.tflite"], "health check through current")

    def _health_or_switch_back(self, release_id: str, previous: str | None) -> None:
        try:
            self._health()
        except DeviceError as exc:
            self._switch(previous)
            raise DeviceError(f"{self.t.who}: release {release_id} failed its health check after the switch; "
                              f"current switched back to {previous or 'nothing (no previous release)'}: {exc}"
                              ) from exc

    def rollback(self, to_release: str) -> dict[str, Any]:
        """Switch ``current`` to an earlier release after verifying it; switch back if it is unhealthy."""
        final = posixpath.join(self.root, "releases", safe_name(to_release, "release id"))
        with self.locked(self.root):
            if self._run(f"test -f {quote(final)}/SHA256SUMS", "release check", check=False)[0] != 0:
                raise ReleaseConflictError(f"{self.t.who}: no release {to_release} on the device to roll back to")
            self._verify(final, f"checksums of {to_release}")
            previous = self.current_release()
            if previous != to_release:
                self._switch(to_release)
                self._health_or_switch_back(to_release, previous)
        return {"release": to_release, "previous": previous}

    def _prune(self, keep: set[str | None]) -> None:
        releases = posixpath.join(self.root, "releases")
        _, out = self._run(f"cd {quote(releases)} && ls -1t", "listing releases")
        names = [n for n in out.split("\n") if n and _SAFE.fullmatch(n)]
        doomed = [n for n in names[self.cfg.keep_releases:] if n not in keep]
        if doomed:
            log.info("%s: removing old releases %s", self.t.who, ", ".join(doomed))
            self._run(f"cd {quote(releases)} && rm -rf -- {' '.join(map(quote, doomed))}", "pruning releases")

    # --- benchmark --------------------------------------------------------------------------------------------
    def benchmark(self, release_id: str, modes: list[str], bench: BenchConfig, label: str) -> dict[str, Any]:
        """Run the release's bench.py with the runtime venv over the given modes; return its JSON document."""
        release = posixpath.join(self.root, "releases", safe_name(release_id, "release id"))
        models = " ".join(f"--model {quote(safe_name(m, 'mode') + '.tflite')}" for m in modes)
        command = (f"cd {quote(release)} && {quote(self.venv_python)} bench.py {models} --sample sample.npz "
                   f"--warmup {bench.warmup} --runs {bench.runs} --threads {bench.threads} --label {quote(label)}")
        log.info("%s: benchmarking %s of release %s (%s)", self.t.who, ", ".join(modes), release_id, label)
        doc = self.t.json(command, f"benchmark of release {release_id}", timeout=bench.timeout_s)
        if doc.get("schema") != 1 or not isinstance(doc.get("results"), dict):
            raise DeviceError(f"{self.t.who}: bench.py printed an unexpected document: {str(doc)[:300]}")
        return doc
