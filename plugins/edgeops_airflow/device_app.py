"""The app side of a deploy: provision edgeops-serve, then activate and health-check a release after a switch.

``provision`` puts ``serve.py``, ``serve_model.py`` and ``serve_records.py`` (from ``tasks.device``, like the
verifier ``device_trust.pin`` puts) into ``<root>/serve/``, points ``<root>/serve/runtime`` at the runtime venv
directory and writes ``serve.env`` with the group's runtime options; a supervised service whose arguments
changed is stopped, so the activate step starts it with the new ones. ``check`` runs the group's ``activate``,
then ``health`` (``tasks.device.app``) and returns which step failed and why, or None. Both run under the deploy
lock, in ``DeviceReleases``.
"""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from shlex import quote

from edgeops_airflow.device_transport import DeviceTransport
from tasks.core.config import DeployConfig
from tasks.core.exceptions import DeviceError
from tasks.device import app, layout
from tasks.device.app import AppHooks
from tasks.device.runtime import RuntimeOptions

log = logging.getLogger(__name__)
_MARGIN_S = 15.0  # on top of health_timeout_s for one device command (connection, process start)


class DeviceApp:
    """edgeops-serve and the group's hooks on one connected device."""

    def __init__(self, transport: DeviceTransport, hooks: AppHooks, runtime_dir: str, venv_python: str) -> None:
        self.t, self.hooks = transport, hooks
        self.root, self.runtime_dir, self.venv_python = transport.root, runtime_dir, venv_python

    @classmethod
    def provisioned(cls, t: DeviceTransport, hooks: AppHooks | None, runtime_dir: str, venv_python: str,
                    runtime: RuntimeOptions, cfg: DeployConfig) -> DeviceApp | None:
        """The service provisioned with the group's runtime options, when the group gives hooks (else None)."""
        if hooks is None:
            return None
        apps = cls(t, hooks, runtime_dir, venv_python)
        apps.provision(runtime, cfg.upload_timeout_s)
        return apps

    @staticmethod
    def after_switch(apps: DeviceApp | None, release: str, fallback: str | None,
                     switch: Callable[[str | None], None]) -> str:
        """Activate + health ``release``; on failure ``switch`` back to ``fallback`` (unless it is this very
        release), re-activate it, and return ``"<step>: <why>; current ..."`` ("" when healthy or no hooks)."""
        failure = apps.check(release, fallback) if apps else None
        if apps is None or failure is None:
            return ""
        back = "kept (it ran this release before)" if fallback == release else \
            f"switched back to {fallback or 'nothing'}"
        if fallback != release:
            switch(fallback)
            apps.reactivate(fallback, release)
        log.error("%s: release %s failed its %s; current %s", apps.t.who, release, failure, back)
        return f"{failure}; current {back}"

    def provision(self, runtime: RuntimeOptions, timeout: float) -> None:
        """The service's code, runtime link and arguments in ``<root>/serve/`` (every deploy, under the lock)."""
        sdir = layout.serve_dir(self.root)
        env, new = posixpath.join(sdir, layout.SERVE_ENV), posixpath.join(sdir, f".{layout.SERVE_ENV}.new")
        code = {name: Path(str(resources.files("tasks.device").joinpath(name))) for name in layout.SERVE_FILES}
        self.t.run(f"mkdir -p {quote(sdir)} {quote(layout.serve_data(self.root))}", timeout,
                   what="making the service dirs")
        self.t.put_files(sdir, code, {f".{layout.SERVE_ENV}.new": app.serve_args(runtime.bench_args(), self.hooks)},
                         timeout)
        link = posixpath.relpath(self.runtime_dir, sdir)
        restart = "" if self.hooks.start else f"{app.restart_cmd(self.root)}; "
        self.t.run(f"cd {quote(sdir)} && ln -sfn {quote(link)} .{layout.SERVE_RUNTIME}.tmp && "
                   f"mv -T .{layout.SERVE_RUNTIME}.tmp {layout.SERVE_RUNTIME} && "
                   f"if ! cmp -s {quote(new)} {quote(env)}; then {restart}mv {quote(new)} {quote(env)}; "
                   f"else rm -f {quote(new)}; fi", timeout, what="linking the service's runtime")

    def check(self, release: str | None, previous: str | None) -> str | None:
        """Activate ``release`` (the one ``current`` points at now), then health-check it: None when both pass,
        else ``"<step>: <why>"``, e.g. ``health: /healthz still serves r1 after 20 s``."""
        wait = self.hooks.health_timeout_s + _MARGIN_S
        steps = (("activate", app.activate_cmd(self.root, self.hooks, release, previous)),
                 ("health", app.health_cmd(self.root, self.hooks, self.venv_python, release, previous)))
        for step, command in steps:
            if release is None and step == "health" and not self.hooks.health:
                break  # nothing to serve: the service answers 503 until a release appears
            try:
                rc, out, err = self.t.run(command, wait, check=False, what=f"app {step} of {release}")
            except DeviceError as exc:
                return f"{step}: {exc}"
            if rc != 0:
                user = self.hooks.activate if step == "activate" else self.hooks.health
                why = " | ".join((out.strip() or err.strip()).splitlines()[-3:])
                if user:
                    return f"{step}: `{user}` exited {rc}" + (f": {why}" if why else "")
                return f"{step}: {why or f'exit {rc}'}"
        log.info("%s: %s activated and healthy", self.t.who, release)
        return None

    def reactivate(self, release: str | None, failed: str) -> str | None:
        """After a switch back to ``release``: activate and check it again; the problem, if any (logged)."""
        problem = self.check(release, failed)
        if problem:
            log.warning("%s: re-activating %s after the switch back failed too: %s", self.t.who,
                        release or "nothing", problem)
        return problem
