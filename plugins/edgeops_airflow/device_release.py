"""Release operations on one device: deploy, roll back, benchmark (the runtime is ``device_runtime``).

Deploy protocol (every step runs on the device, all of it under one lock):

1. Lock: ``flock <root>/.lock`` is held for the whole deploy by a helper process on the device that lives as
   long as our SSH channel (a dropped connection releases it). Concurrent deploys to one device serialize; a
   second attempt of the same release waits, then finds it done (reused) or redoes it cleanly. Staging dirs
   left by dead attempts are removed first (nobody else can be staging while we hold the lock), and every
   rename below first checks that the lock helper still lives, so a script left running on the device by a
   dropped connection stops instead of racing the retry.
2. Stage: upload into a unique ``<root>/.staging/<uuid>/`` (never a name derived from the release id), then
   ``sha256sum -c SHA256SUMS`` on the device (a python fallback when sha256sum is absent), then ``sync``.
   An upload that fails (connection cut, disk full) removes the staging dir and says how much space is left.
3. Smoke test in the staging dir with the device runtime: the shipped ``bench.py --smoke`` loads every
   variant in a child process (a crashing interpreter is a failed test), with the group's threads and
   delegate (``RuntimeOptions``), runs one invoke on one sample image, and checks the output shape (batch 1,
   wide enough for the sample's labels) and that all values are finite. A failure, or a delegate that does not
   load (``DelegateError``), stops the deploy here, the staging dir is removed: the model never becomes
   ``current``.
4. Rename the staging dir to ``releases/<release_id>/`` (release_id = the sanitized run id), ``sync``; switch
   ``current`` (a new symlink renamed over the old one: atomic), ``sync``.
5. Health check through ``current`` (checksums + smoke test of ``model.tflite``), also when an earlier
   attempt already switched. On failure ``current`` is switched back to the previous release (``sync``
   again) and the deploy fails naming both releases.
6. Prune: keep the newest ``deploy.keep_releases`` releases, never deleting ``current`` or the previous one;
   remove the staging dirs.
7. Activate and app health (only with a group's ``AppHooks``, ``device_app``): edgeops-serve is provisioned
   into ``<root>/serve/`` with the lock held, then the group's ``activate`` runs (default: SIGHUP the service, or
   start it), then its ``health`` (default: poll ``/healthz`` until it serves the new release). If either
   fails, ``current`` is switched back, the previous release re-activated, and the result's ``app_failure``
   names the step and why (the deploy itself returns: the rollout record shows it).

An identical release already on the device (same SHA256SUMS and current variant) is reused; a different one
under the same id raises ``ReleaseConflictError`` (fatal: never retried). ``rollback(to_release)`` verifies the
target, switches, and runs the same health check with the same automatic switch-back.
"""

from __future__ import annotations

import json
import logging
import posixpath
import re
import uuid
from pathlib import Path
from shlex import quote
from typing import Any

from edgeops_airflow import device_trust
from edgeops_airflow.device_app import DeviceApp
from edgeops_airflow.device_transport import DeviceTransport
from edgeops_airflow.device_trust import ReleaseSigning
from tasks.core.config import BenchConfig, DeployConfig
from tasks.core.exceptions import (
    DelegateError,
    DeviceError,
    IntegrityError,
    ReleaseConflictError,
    UntrustedReleaseError,
)
from tasks.core.results import FileEntry
from tasks.core.storage import sha256_file
from tasks.device import layout
from tasks.device.app import AppHooks
from tasks.device.layout import DeployExit
from tasks.device.records import BenchRun, Deployed, Switched, bench_error
from tasks.device.runtime import SMOKE_THREADS, RuntimeOptions, runtime_key
from tasks.device.signing import Trust

log = logging.getLogger(__name__)

_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # always fullmatch
_VERIFY_SUMS = (
    "import hashlib, sys\nfor line in open(sys.argv[1]):\n    h, n = line.split(None, 1); n = n.strip()\n"
    "    if hashlib.sha256(open(n, 'rb').read()).hexdigest() != h: sys.exit('FAILED: ' + n)"
)


_EXIT_WHAT = {DeployExit.CHECKSUMS: "checksum check (sha256sum -c: corrupted on the way or on disk?)",
              DeployExit.LOST_LOCK: "the deploy lock was lost (connection dropped?)",
              DeployExit.UNTRUSTED: "the device refused the signed release statement"}


def _exit(code: DeployExit) -> str:
    """The shell statement that ends a protocol script with ``code`` (read back by ``_checked``)."""
    return f"exit {int(code)}"


def _sync(path: str) -> str:
    """fsync the filesystem holding ``path`` (coreutils sync -f), or everything where -f is unknown."""
    return f"{{ sync -f {path} 2>/dev/null || sync; }}"


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
        self._holder = 0  # pid of the device-side lock helper while a deploy or rollback holds the lock

    def _run(self, command: str, what: str, check: bool = True, timeout: float | None = None) -> tuple[int, str]:
        rc, out, _ = self.t.run(command, timeout or self.cfg.command_timeout_s, check=check, what=what)
        return rc, out

    # --- deploy -----------------------------------------------------------------------------------------------
    def deploy(self, release_id: str, files: dict[str, str | Path], current_mode: str,
               runtime: RuntimeOptions | None = None, signing: ReleaseSigning | None = None,
               app: AppHooks | None = None) -> Deployed:
        """Run the deploy protocol (module docstring) for one release, signed by ``signing``.

        The smoke tests run with ``runtime`` (the device group's threads and delegate; default: XNNPACK on one
        thread). Device round trips are few on purpose (each costs a process start on the device): prepare,
        upload, stage (verify + smoke + rename), switch (switch + health + prune), and a switch-back on failure.
        """
        smoke = runtime or RuntimeOptions(threads=SMOKE_THREADS)
        safe_name(release_id, "release id")
        if signing is None:
            raise UntrustedReleaseError(f"{self.t.who}: a release is deployed only with a signed statement")
        link = layout.variant_file(safe_name(current_mode, "mode"))
        if link not in files or layout.BENCH not in files or layout.SAMPLE not in files:
            raise ReleaseConflictError(f"{self.t.who}: a release needs {link}, {layout.BENCH} and {layout.SAMPLE}; "
                                       f"got {sorted(files)}")
        entries = []
        for name, path in sorted(files.items()):
            if not Path(path).is_file():
                raise DeviceError(f"{self.t.who}: local file {path} for {name} is missing")
            entries.append(FileEntry(name=safe_name(name, "file name"), sha256=sha256_file(path),
                                     size_bytes=Path(path).stat().st_size))
        sums = "".join(f"{e.sha256}  {e.name}\n" for e in entries)
        final = layout.release_path(self.root, release_id)
        staging = posixpath.join(self.root, layout.STAGING, uuid.uuid4().hex)
        with self.t.locked(self.root, self.cfg.lock_timeout_s) as self._holder:
            statement = signing.statement(release_id, current_mode, tuple(entries))  # under the lock: in order
            previous, existing = self._prepare(final, staging)
            before = previous  # what ran before this attempt: the switch-back target
            device_trust.pin(self.t, self.root, signing.trust, self.cfg.upload_timeout_s)
            device_trust.put_statement(self.t, staging, statement, self.cfg.upload_timeout_s)
            apps = DeviceApp.provisioned(self.t, app, self.runtime_dir, self.venv_python, smoke, self.cfg)
            reused = self._existing(final, existing, sums, link) and self._accept_in_place(release_id, final, staging)
            if not reused:
                meta = {"release": release_id, "files": [e.to_xcom() for e in entries], "previous": previous,
                        "current_variant": current_mode}
                self._stage_and_rename(staging, final, files, sums, link, meta, smoke, existing is not None)
            elif previous == release_id:  # an earlier attempt switched already: report what it replaced
                meta_file = quote(posixpath.join(final, layout.RELEASE_META))
                previous = self.t.json(f"cat {meta_file}", f"reading {layout.RELEASE_META}")["previous"]
            self._switch_check_prune(release_id, previous, smoke, before)
            failure = DeviceApp.after_switch(apps, release_id, before, self._switch)
        if not failure:
            log.info("%s: current -> releases/%s [%s] (was %s)", self.t.who, release_id, link, previous)
        previous = previous if previous != release_id else None
        return Deployed(release=release_id, previous=previous, current_variant=current_mode, files=tuple(entries),
                        reused=reused, app_failure=failure)

    def _accept_in_place(self, release_id: str, final: str, staging: str) -> bool:
        """A kept release is reused only when its files' actual hashes match (sha256sum -c) and the new signed
        statement verifies against them; then the statement replaces the release's. False: damaged, rebuild."""
        stmt, kept = quote(posixpath.join(staging, layout.STATEMENT)), quote(posixpath.join(final, layout.STATEMENT))
        script = "\n".join([
            f"cd {quote(final)} || {_exit(DeployExit.OTHER)}", f"{self._verify_cmd()} || {_exit(DeployExit.CHECKSUMS)}",
            device_trust.verify_cmd(self.venv_python, self.root, release_id, posixpath.join(staging, layout.STATEMENT)),
            f"cp {stmt} {kept}.tmp && mv {kept}.tmp {kept} && {_sync('.')} || {_exit(DeployExit.OTHER)}"])
        try:
            self._checked(script, f"verifying the kept release {release_id}", self.cfg.command_timeout_s)
        except DeviceError as exc:
            if _EXIT_WHAT[DeployExit.CHECKSUMS] not in str(exc):
                raise
            log.warning("%s: kept release %s is damaged (%s): uploading it again", self.t.who, release_id, exc)
            return False
        log.info("%s: %s is already on the device, intact; reusing it", self.t.who, final)
        return True

    def _prepare(self, final: str, staging: str) -> tuple[str | None, str | None]:
        """Remove stale staging dirs, make ours; return (current release, existing SHA256SUMS + link or None)."""
        root, rel = quote(self.root), quote(final)
        _, out = self._run(
            f"cd {root} && rm -rf {layout.STAGING} && mkdir -p {layout.RELEASES} {quote(staging)} && "
            f"printf 'CURRENT %s\\n' \"$(readlink {layout.CURRENT} 2>/dev/null)\" && if test -e {rel}; then "
            f"echo EXISTS; cat {rel}/{layout.SUMS} 2>/dev/null; "
            f"printf 'LINK %s\\n' \"$(readlink {rel}/{layout.MODEL})\"; fi",
            "preparing the deploy (disk full or read-only?)")
        head, _, rest = out.partition("\n")
        current = posixpath.basename(head.removeprefix("CURRENT ").strip()) or None
        return current, (rest.partition("EXISTS\n")[2] if rest.startswith("EXISTS") else None)

    def _existing(self, final: str, existing: str | None, sums: str, link: str) -> bool:
        """True if ``final`` holds this very release; ReleaseConflictError if it holds another one."""
        if existing is None:
            return False
        if existing == f"{sums}LINK {link}\n":
            return True  # the same release by its records; its files are checked next (_accept_in_place)
        raise ReleaseConflictError(
            f"{self.t.who}: {final} already exists with different content (or another current variant); "
            "release ids are immutable: deploy under a new run id, or remove that directory on the device")

    def _stage_and_rename(self, staging: str, final: str, files: dict[str, str | Path], sums: str, link: str,
                          meta: dict[str, Any], runtime: RuntimeOptions, replace: bool) -> None:
        """Upload, verify (sums, then the signed statement), smoke, rename; ``replace`` rebuilds a damaged kept
        release (``_replace_cmd``)."""
        models = sorted(n for n in files if n.endswith(layout.TFLITE_SUFFIX))
        rename = (self._replace_cmd(staging, final, meta["release"]) if replace else
                  f"mv -T {quote(staging)} {quote(final)} && {_sync(quote(final))} || {_exit(DeployExit.OTHER)}")
        try:
            self.t.put_files(staging, files, {layout.SUMS: sums, layout.RELEASE_META: json.dumps(meta)},
                             self.cfg.upload_timeout_s)
            other = _exit(DeployExit.OTHER)
            script = "\n".join([
                f"cd {quote(staging)} || {other}", f"{self._verify_cmd()} || {_exit(DeployExit.CHECKSUMS)}",
                f"ln -s {quote(link)} {layout.MODEL} && {_sync('.')} || {other}",
                device_trust.verify_cmd(self.venv_python, self.root, meta["release"], layout.STATEMENT),
                f"{self._smoke_cmd(models, runtime)} || {_exit(DeployExit.SMOKE)}", self._guard(), rename])
            self._checked(script, "in staging", self.cfg.smoke_timeout_s + 2 * self.cfg.command_timeout_s)
        except DeviceError as exc:
            self._cleanup(staging, exc)
            raise

    def _replace_cmd(self, staging: str, final: str, release_id: str) -> str:
        """Rebuild a damaged kept release from the verified staging dir, never leaving ``current`` dangling:
        while ``final`` is replaced, ``current`` (if it pointed there) shows a hard-linked copy of the staging dir
        (``releases/.repair-<uuid>``), then points at the rebuilt release again."""
        root, other = quote(self.root), _exit(DeployExit.OTHER)
        repair = posixpath.join(layout.RELEASES, f"{layout.REPAIR_PREFIX}{uuid.uuid4().hex}")
        target = quote(layout.release_link(release_id))
        return "\n".join([
            f"cp -al {quote(staging)} {root}/{quote(repair)} || {other}",
            f"was=$(readlink {root}/{layout.CURRENT})",
            f"if [ \"$was\" = {target} ]; then cd {root} && {self._switch_cmd(quote(repair))} || {other}; fi",
            f"rm -rf {quote(final)} && mv -T {quote(staging)} {quote(final)} && {_sync(quote(final))} || {other}",
            f"if [ \"$was\" = {target} ]; then cd {root} && {self._switch_cmd(target)} || {other}; fi",
            f"rm -rf {root}/{quote(repair)}"])

    def _switch_check_prune(self, release_id: str, previous: str | None, runtime: RuntimeOptions,
                            fallback: str | None) -> None:
        """Protocol steps 4-6 in one device command; on a failed health check, switch back (step 5) to
        ``fallback``, what ran before this attempt: when that is this very release, ``current`` stays; it is
        removed only when the device had none."""
        root, target = quote(self.root), quote(layout.release_link(release_id))
        keep = " ".join(f"-e {quote(k)}" for k in (release_id, previous) if k)
        other = _exit(DeployExit.OTHER)
        script = "\n".join([
            f"cd {root} || {other}", self._guard(),
            f"if [ \"$(readlink {layout.CURRENT})\" != {target} ]; then {self._switch_cmd(target)} || {other}; fi",
            f"cd {root}/{layout.CURRENT} || {other}", f"{self._verify_cmd()} || {_exit(DeployExit.CHECKSUMS)}",
            f"{self._smoke_cmd([layout.MODEL], runtime)} || {_exit(DeployExit.SMOKE)}",
            f"cd {root}/{layout.RELEASES} && ls -1t | tail -n +{self.cfg.keep_releases + 1} | grep -vxF {keep} "
            "| xargs -r rm -rf --", f"rm -rf {root}/{layout.STAGING}"])
        try:
            self._checked(script, "through current (health check)",
                          self.cfg.smoke_timeout_s + 2 * self.cfg.command_timeout_s)
        except DeviceError as exc:
            if fallback != release_id:
                self._switch(fallback)
            kind = DelegateError if isinstance(exc, DelegateError) else DeviceError
            back = ("kept (it ran this release before the attempt)" if fallback == release_id else
                    f"switched back to {fallback or 'nothing (it had no release before)'}")
            raise kind(f"{self.t.who}: release {release_id} failed its health check after the switch; "
                       f"current {back}: {exc}") from exc

    def _guard(self) -> str:
        """Stop a protocol script whose deploy lost the lock: its SSH connection dropped while it ran on the
        device, and a retry may already hold the lock. Checked right before each rename."""
        return (f"kill -0 {self._holder} 2>/dev/null || {{ echo 'the deploy lock was released (connection "
                f"dropped?): stopping before the rename' >&2; {_exit(DeployExit.LOST_LOCK)}; }}")

    def _verify_cmd(self) -> str:
        """``sha256sum -c`` of SHA256SUMS in the working dir; the device's python where sha256sum is absent."""
        return (f"if command -v sha256sum >/dev/null 2>&1; then sha256sum -c --quiet {layout.SUMS}; "
                f"else {quote(self.t.python)} -c {quote(_VERIFY_SUMS)} {layout.SUMS}; fi")

    def _smoke_cmd(self, models: list[str], runtime: RuntimeOptions) -> str:
        args = " ".join([*(f"--model {quote(m)}" for m in models), *map(quote, runtime.bench_args())])
        return (f"{quote(self.venv_python)} {layout.BENCH} --smoke {args} --sample {layout.SAMPLE} "
                f"--timeout {int(self.cfg.smoke_timeout_s)}")

    def _checked(self, script: str, where: str, timeout: float) -> None:
        """Run a protocol script whose exit code (``DeployExit``) says which step failed."""
        rc, out, err = self.t.run(script, timeout, check=False, what=f"deploy step {where}")
        if rc == 0:
            return
        tail = " | ".join(err.strip().splitlines()[-6:])
        if rc == DeployExit.SMOKE and (delegate := bench_error(out)):
            raise DelegateError(f"{self.t.who}: smoke test {where} failed: {delegate}")
        if rc == DeployExit.SMOKE:
            try:
                failed = {k: v["why"] for k, v in json.loads(out.strip().splitlines()[-1])["smoke"].items()
                          if not v["ok"]}
            except (IndexError, ValueError, KeyError, TypeError):
                failed = {layout.BENCH: tail}
            raise DeviceError(f"{self.t.who}: smoke test {where} failed: {failed}")
        what = _EXIT_WHAT.get(rc, f"exit {rc}")
        if rc == DeployExit.UNTRUSTED:
            raise UntrustedReleaseError(f"{self.t.who}: deploy step {where} failed: {what}: {tail}")
        raise DeviceError(f"{self.t.who}: deploy step {where} failed: {what}: {tail}")

    def _cleanup(self, staging: str, exc: DeviceError) -> None:
        """Remove a failed attempt's staging dir (best effort: the connection may be gone) and add disk facts."""
        try:
            _, free = self._run(f"df -Pk {quote(self.root)} | tail -1; rm -rf {quote(staging)}", "cleanup",
                                check=False)
            parts = free.split()
            if len(parts) >= 4 and parts[3].isdigit() and int(parts[3]) < 1024:
                exc.args = (f"{exc.args[0]}\ndevice disk full: {parts[3]} KiB free on {self.root}; "
                            "free space there (old releases, logs) and retry",)
        except DeviceError:
            log.warning("%s: could not clean %s (the next deploy removes it)", self.t.who, staging)

    # --- switch, rollback -------------------------------------------------------------------------------------
    def current_release(self) -> str | None:
        rc, out = self._run(f"readlink {quote(posixpath.join(self.root, layout.CURRENT))}", "readlink", check=False)
        return posixpath.basename(out.strip()) if rc == 0 and out.strip() else None

    def _switch(self, release_id: str | None) -> None:
        root = quote(self.root)
        if release_id is None:
            self._run(f"rm -f {root}/{layout.CURRENT} && {_sync(root)}", "removing current")
            return
        self._run(f"cd {root} && {self._switch_cmd(quote(layout.release_link(release_id)))}",
                  f"switching current to {release_id}")

    @staticmethod
    def _switch_cmd(target: str) -> str:
        """Point ``current`` at ``target`` (quoted, relative to the root, the working dir): a new symlink renamed
        over the old one (atomic); ``touch -h`` makes the release the newest for pruning."""
        return (f"touch -h {target} && ln -sfn {target} {layout.CURRENT_TMP} && mv -T {layout.CURRENT_TMP} "
                f"{layout.CURRENT} && {_sync('.')}")

    def rollback(self, to_release: str, runtime: RuntimeOptions | None = None, trust: Trust | None = None,
                 app: AppHooks | None = None) -> Switched:
        """Switch ``current`` to a kept release after verifying it; switch back if it is unhealthy (the health
        check's smoke test runs with ``runtime``, as in ``deploy``). A deliberate rollback is a new statement:
        the release's own one, checked against the accepted keys and signed again with a higher sequence."""
        final = layout.release_path(self.root, safe_name(to_release, "release id"))
        if trust is None:
            raise UntrustedReleaseError(f"{self.t.who}: a rollback needs the release signer (a new statement)")
        staging = posixpath.join(self.root, layout.STAGING, uuid.uuid4().hex)
        with self.t.locked(self.root, self.cfg.lock_timeout_s) as self._holder:
            rc, out = self._run(f"test -f {quote(final)}/{layout.SUMS} && {{ cat {quote(final)}/{layout.STATEMENT} "
                                "2>/dev/null || true; }", "release check", check=False)
            if rc != 0:
                raise ReleaseConflictError(f"{self.t.who}: no release {to_release} on the device to roll back to")
            if out.strip():
                self._accept_resigned(to_release, final, staging, out, trust)
            else:  # kept from before signing: accepted then; only its hashes can be checked (sha256sum -c)
                log.warning("%s: %s has no signed statement (deployed before signing)", self.t.who, to_release)
                self._checked(f"cd {quote(final)} && {{ {self._verify_cmd()} || {_exit(DeployExit.CHECKSUMS)}; }}",
                              f"verifying {to_release}", self.cfg.command_timeout_s)
            previous = self.current_release()
            smoke = runtime or RuntimeOptions(threads=SMOKE_THREADS)
            apps = DeviceApp.provisioned(self.t, app, self.runtime_dir, self.venv_python, smoke, self.cfg)
            self._switch_check_prune(to_release, previous if previous != to_release else None, smoke, previous)
            failure = DeviceApp.after_switch(apps, to_release, previous, self._switch)
        if failure and previous != to_release:
            return Switched(release=previous, previous=to_release, app_failure=failure)
        return Switched(release=to_release, previous=previous, app_failure=failure)

    def _accept_resigned(self, release: str, final: str, staging: str, kept: str, trust: Trust) -> None:
        """The kept release's statement, checked and signed again (a new sequence), verified in place."""
        try:
            statement = trust.resign(json.loads(kept))
        except (ValueError, IntegrityError) as exc:
            raise UntrustedReleaseError(f"{self.t.who}: release {release}: {exc}") from None
        self._run(f"mkdir -p {quote(staging)}", "staging the statement")
        device_trust.pin(self.t, self.root, trust, self.cfg.upload_timeout_s)
        device_trust.put_statement(self.t, staging, statement, self.cfg.upload_timeout_s)
        if not self._accept_in_place(release, final, staging):
            raise DeviceError(f"{self.t.who}: release {release} is damaged on the device: roll out its run again "
                              "(that repairs it), or roll back to another release")

    def remove_current(self) -> Switched:
        """Remove ``current`` (a canary that had no release before its first deploy goes back to none)."""
        with self.t.locked(self.root, self.cfg.lock_timeout_s) as self._holder:
            previous = self.current_release()
            self._switch(None)
        return Switched(release=None, previous=previous)

    # --- benchmark (device_bench.py) ----------------------------------------------------------------------
    def benchmark(self, release_id: str, modes: list[str], bench: BenchConfig, label: str,
                  runtime: RuntimeOptions | None = None) -> BenchRun:
        """The release's bench.py over ``modes`` (``device_bench.benchmark``)."""
        from edgeops_airflow.device_bench import benchmark

        return benchmark(self.t, self.venv_python, safe_name(release_id, "release id"),
                         [safe_name(m, "mode") for m in modes], bench, label, runtime)
