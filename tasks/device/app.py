"""Activation and app health after a switch of ``current``: a fleet group's hooks and their device commands.

After the deploy switches ``current`` (and after a rollback's switch), the group's ``activate`` runs, then its
``health``. Defaults:

* ``activate``: SIGHUP to edgeops-serve (its pid is in ``<root>/serve-data/endpoint.json``), or, when that pid
  is dead, start it: ``start`` (the group's command, e.g. ``sudo systemctl start edgeops-serve`` on a Pi), else a
  supervised process detached with ``setsid nohup``, output to ``<root>/serve-data/serve.log`` (the sshd
  stand-ins);
* ``health``: poll ``/healthz`` over the device's loopback (Unix socket, else 127.0.0.1) with the runtime's python
  until it serves the new release, within ``health_timeout_s``; it fails at once when the service names the new
  release as refused.

A user command replaces either (``systemctl reload myapp``); it runs in the deploy root with ``EDGEOPS_RELEASE``,
``EDGEOPS_PREVIOUS`` and ``EDGEOPS_ROOT`` set, and must exit 0 within ``health_timeout_s``. The plugin's
device_app.py runs these commands; this module only builds them.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from shlex import quote
from typing import Any

from tasks.core.exceptions import ConfigError
from tasks.core.results import Record
from tasks.device import layout

DEFAULT_PORT = 8470  # serve.py's --http-port default
MAX_HEALTH_TIMEOUT_S = 600.0

_HEALTH = r"""
import http.client, json, socket, sys, time
state, want, timeout = sys.argv[1], sys.argv[2], float(sys.argv[3])
class Unix(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=5)
        self.path_ = path
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(5)
        self.sock.connect(self.path_)
end, last = time.monotonic() + timeout, "edgeops-serve is not running (no endpoint.json)"
while True:
    try:
        try:
            ep = json.load(open(state + "/endpoint.json"))
        except FileNotFoundError:
            last = "edgeops-serve is not running (no endpoint.json)"
            raise
        c = Unix(ep["socket"]) if ep.get("socket") else \
            http.client.HTTPConnection("127.0.0.1", ep["http_port"], timeout=5)
        c.request("GET", "/healthz")
        h = json.loads(c.getresponse().read())
        c.close()
        if h.get("ready") and h.get("release") == want:
            print(json.dumps(h))
            sys.exit(0)
        failed = h.get("failed") or {}
        if failed.get("release") == want:
            print("edgeops-serve refused %s: %s; still serves %s" % (want, failed.get("why"), h.get("release")))
            sys.exit(1)
        last = "/healthz still serves %s" % (h.get("release") or "nothing")
    except FileNotFoundError:
        pass
    except (OSError, ValueError, KeyError, http.client.HTTPException) as exc:
        last = "/healthz did not answer (%s: %s)" % (type(exc).__name__, exc)
    if time.monotonic() > end:
        print("%s after %g s" % (last, timeout))
        sys.exit(1)
    time.sleep(0.2)
"""


def _require(cond: bool, message: str) -> None:
    if not cond:
        raise ConfigError(f"app: {message}")


def _command(value: Any, name: str) -> None:
    _require(isinstance(value, str) and value.isprintable(),
             f"{name}={value!r}: a one-line shell command (\"\" = the default)")


@dataclass(frozen=True)
class AppHooks(Record):
    """A group's activation and health hooks (``Group.app``; travels in ``DeviceTask.app``)."""

    activate: str = ""  # "" = SIGHUP edgeops-serve, or start it when it is not running
    health: str = ""  # "" = poll /healthz until it serves the new release
    health_timeout_s: float = 20.0  # for activate and health each
    start: str = ""  # how edgeops-serve is started ("" = a setsid/nohup process), e.g. systemctl start edgeops-serve
    http_port: int = DEFAULT_PORT  # edgeops-serve's 127.0.0.1 port; 0 = a free one (process stand-ins share a host)

    def __post_init__(self) -> None:
        for name in ("activate", "health", "start"):
            _command(getattr(self, name), name)
        _require(isinstance(self.health_timeout_s, int | float) and not isinstance(self.health_timeout_s, bool)
                 and 0 < self.health_timeout_s <= MAX_HEALTH_TIMEOUT_S,
                 f"health_timeout_s={self.health_timeout_s!r}: seconds, > 0 and <= {MAX_HEALTH_TIMEOUT_S:g}")
        _require(isinstance(self.http_port, int) and not isinstance(self.http_port, bool)
                 and 0 <= self.http_port <= 65535, f"http_port={self.http_port!r}: 0..65535 (0 = a free port)")
        object.__setattr__(self, "health_timeout_s", float(self.health_timeout_s))

    @classmethod
    def from_dict(cls, raw: Any) -> AppHooks:
        """From a fleet file's group ``app`` object; unknown keys are one ConfigError."""
        _require(isinstance(raw, dict), "expected an object with activate, health, health_timeout_s, start, "
                                        "http_port")
        known = {"activate", "health", "health_timeout_s", "start", "http_port"}
        _require(not set(raw) - known, f"unknown key(s) {sorted(set(raw) - known)}; known: {sorted(known)}")
        return cls(**raw)


def serve_args(runtime_args: list[str], hooks: AppHooks) -> str:
    """serve.env: the service's arguments (systemd's EnvironmentFile; the stand-in's start reads the same line)."""
    return "EDGEOPS_SERVE_ARGS=" + " ".join([*runtime_args, "--http-port", str(hooks.http_port)]) + "\n"


def _env(root: str, release: str | None, previous: str | None) -> str:
    return (f"cd {quote(root)} && export EDGEOPS_ROOT={quote(root)} EDGEOPS_RELEASE={quote(release or '')} "
            f"EDGEOPS_PREVIOUS={quote(previous or '')} &&")


# edgeops-serve's process lives: a zombie (killed, not yet reaped: its parent, init or a container's pid 1, may
# never reap it) answers ``kill -0`` but serves nothing, so its state letter in /proc/<pid>/stat must not be Z.
_ALIVE = "kill -0 \"$pid\" 2>/dev/null && [ \"$(sed 's/.*) //' /proc/$pid/stat 2>/dev/null | cut -c1)\" != Z ]"


def _pid_cmd(root: str) -> str:
    """Sets ``pid`` to edgeops-serve's pid when that process lives (not a zombie), else to nothing."""
    endpoint = quote(posixpath.join(layout.serve_data(root), layout.ENDPOINT))
    return (f"pid=$(sed -n 's/.*\"pid\": *\\([0-9][0-9]*\\).*/\\1/p' {endpoint} 2>/dev/null); "
            f"[ -n \"$pid\" ] && {_ALIVE} || pid=")


def start_cmd(root: str, hooks: AppHooks) -> str:
    """Start edgeops-serve unless it runs: the group's ``start`` or a detached process; stale endpoint removed."""
    data, sdir = layout.serve_data(root), layout.serve_dir(root)
    if hooks.start:
        launch = f"{hooks.start};"
    else:
        python = posixpath.join(sdir, layout.SERVE_RUNTIME, "bin", "python")
        launch = (f"args=$(sed -n 's/^EDGEOPS_SERVE_ARGS=//p' {quote(posixpath.join(sdir, layout.SERVE_ENV))}); "
                  f"setsid nohup {quote(python)} {quote(posixpath.join(sdir, 'serve.py'))} --root {quote(root)} "
                  f"$args >> {quote(posixpath.join(data, layout.SERVE_LOG))} 2>&1 < /dev/null &")
    return (f"{_pid_cmd(root)}; if [ -z \"$pid\" ]; then mkdir -p {quote(data)} && "
            f"rm -f {quote(posixpath.join(data, layout.ENDPOINT))} && {{ {launch} }}; fi")


def activate_cmd(root: str, hooks: AppHooks, release: str | None, previous: str | None) -> str:
    """The activate step: the group's command, or SIGHUP edgeops-serve (start it when it is not running)."""
    if hooks.activate:
        return f"{_env(root, release, previous)} {{ {hooks.activate}\n}}"
    return f"{_pid_cmd(root)}; if [ -n \"$pid\" ]; then kill -HUP \"$pid\"; else {start_cmd(root, hooks)}; fi"


def health_cmd(root: str, hooks: AppHooks, python: str, release: str | None, previous: str | None) -> str:
    """The health step: the group's command, or poll /healthz until it serves ``release``."""
    if hooks.health:
        return f"{_env(root, release, previous)} {{ {hooks.health}\n}}"
    return (f"{quote(python)} -c {quote(_HEALTH)} {quote(layout.serve_data(root))} {quote(release or '')} "
            f"{hooks.health_timeout_s:g}")


def restart_cmd(root: str) -> str:
    """Stop the supervised edgeops-serve (its arguments changed); the activate step starts it again."""
    return f"{_pid_cmd(root)}; if [ -n \"$pid\" ]; then kill \"$pid\"; while {_ALIVE}; do sleep 0.1; done; fi"
