"""The fleet inventory: which devices exist, how each is reached, its group (hardware class) and rollout wave.

A **group** carries the runtime options of its devices (LiteRT threads and delegate: the built-in ``xnnpack``
or an external delegate library by absolute path, e.g. Arm NN or a Coral Edge TPU) and the **budgets** a canary
must meet on the device: p95 latency, peak RSS and accuracy within a tolerance of the host-measured accuracy.
A **device** names its Airflow SSH connection (``edgeops_device_<name>`` unless given), its group and its wave:
wave 0 holds the canaries, later waves follow in order, without gaps.

Everything is a frozen dataclass validated on construction; a mistake is one ``ConfigError`` that says what to
fix. The file is JSON (``config/fleet.json`` for the dev stack, or ``$EDGEOPS_FLEET``)::

    {"groups": {"<group>": {"threads": 4, "delegate": "xnnpack",
                            "budgets": {"p95_latency_ms": 50, "peak_rss_mb": 300, "accuracy_tolerance": 0.02}}},
     "devices": [{"name": "pi1", "group": "<group>", "wave": 0}, ...]}

A group's optional ``app`` object sets what runs after a switch (``tasks.device.app.AppHooks``): ``activate`` and
``health`` commands ("" = signal edgeops-serve / poll its /healthz), ``health_timeout_s``, ``start`` (how the
service starts, e.g. ``systemctl start edgeops-serve``) and edgeops-serve's ``http_port`` (0 = a free port).
Its optional ``drift`` object sets the drift thresholds of its devices (``tasks.fleet.drift.DriftSettings``:
``psi``, ``alpha``, ``min_requests``, ``window_h``).
A group's optional ``traffic_canary`` object (``tasks.fleet.traffic.TrafficCanary``; off when absent) makes the
canary gate wait for, and judge, the canaries' real traffic before promoting.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tasks.core import names
from tasks.core.exceptions import ConfigError
from tasks.device.app import AppHooks
from tasks.device.runtime import XNNPACK, RuntimeOptions
from tasks.fleet.drift import DriftSettings
from tasks.fleet.traffic import TrafficCanary

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}")  # fullmatch: "$" would accept a trailing newline
DEFAULT_FILE = Path(__file__).resolve().parents[2] / "config" / "fleet.json"


def _require(cond: bool, message: str) -> None:
    if not cond:
        raise ConfigError(message)


@dataclass(frozen=True)
class Budgets:
    """What a canary must meet on the device before the rollout continues."""

    p95_latency_ms: float
    peak_rss_mb: float
    accuracy_tolerance: float  # allowed drop of on-device accuracy below the host-measured one (0..1, absolute)

    def __post_init__(self) -> None:
        _require(self.p95_latency_ms > 0, f"budgets.p95_latency_ms={self.p95_latency_ms}: must be > 0 (ms)")
        _require(self.peak_rss_mb > 0, f"budgets.peak_rss_mb={self.peak_rss_mb}: must be > 0 (MB)")
        _require(0 <= self.accuracy_tolerance <= 1,
                 f"budgets.accuracy_tolerance={self.accuracy_tolerance}: must be in [0, 1] (accuracy is 0..1)")


@dataclass(frozen=True)
class Group:
    """A hardware class: runtime options and budgets shared by its devices."""

    name: str
    budgets: Budgets
    threads: int = 1
    delegate: str = XNNPACK  # "xnnpack" or the absolute path of an external delegate library (.so)
    delegate_options: dict[str, str] = field(default_factory=dict)  # passed to load_delegate(path, options)
    app: AppHooks = field(default_factory=AppHooks)  # activate + health after a switch (tasks.device.app)
    drift: DriftSettings = field(default_factory=DriftSettings)  # production vs test split (tasks.fleet.drift)
    traffic_canary: TrafficCanary | None = None  # judge the canaries' real traffic before promoting (None: off)

    def __post_init__(self) -> None:
        _require(bool(_NAME.fullmatch(self.name)), f"group {self.name!r}: use letters, digits, '_' or '-' (max 63)")
        try:
            self.runtime  # noqa: B018 - RuntimeOptions is the one home of the threads/delegate rules
        except ConfigError as exc:
            raise ConfigError(f"group {self.name!r}: {str(exc).removeprefix('runtime options: ')}") from None

    @property
    def runtime(self) -> RuntimeOptions:
        """How LiteRT runs a release on this group's devices (the deploy's smoke test, the benchmark)."""
        return RuntimeOptions(threads=self.threads, delegate=self.delegate, delegate_options=self.delegate_options)

    @property
    def external_delegate(self) -> bool:
        return self.runtime.external


@dataclass(frozen=True)
class Device:
    """One device: how Airflow reaches it, its group and its rollout wave."""

    name: str
    group: str
    wave: int
    connection: str = ""  # Airflow SSH connection id; "" = names.device_conn_id(name)
    optional: bool = False  # not always up (e.g. the emulated arm64 container); a rollout may skip it

    def __post_init__(self) -> None:
        _require(bool(_NAME.fullmatch(self.name)), f"device {self.name!r}: use letters, digits, '_' or '-' (max 63)")
        _require(isinstance(self.wave, int) and self.wave >= 0,
                 f"device {self.name!r}: wave={self.wave!r}: must be an integer >= 0 (0 = canary)")
        if not self.connection:
            object.__setattr__(self, "connection", names.device_conn_id(self.name))


@dataclass(frozen=True)
class Inventory:
    """Groups and devices, checked together: known groups, unique devices and connections, waves 0..n."""

    groups: tuple[Group, ...]
    devices: tuple[Device, ...]

    def __post_init__(self) -> None:
        _require(bool(self.groups), "fleet: define at least one group")
        _require(bool(self.devices), "fleet: list at least one device")
        _unique([g.name for g in self.groups], "group")
        _unique([d.name for d in self.devices], "device")
        _unique([d.connection for d in self.devices], "connection")
        known = sorted(g.name for g in self.groups)
        for d in self.devices:
            _require(d.group in known, f"fleet: device {d.name!r}: unknown group {d.group!r}; groups: {known}")
        waves = sorted({d.wave for d in self.devices})
        _require(waves[0] == 0, f"fleet: no wave 0: the canary wave needs at least one device (waves: {waves})")
        missing = sorted(set(range(waves[-1] + 1)) - set(waves))
        _require(not missing, f"fleet: wave(s) {missing} have no device: number waves 0..n without gaps")
        _require(any(not d.optional for d in self.devices if d.wave == 0),
                 "fleet: wave 0 has only optional devices: put an always-up device in the canary wave")

    def group(self, name: str) -> Group:
        for g in self.groups:
            if g.name == name:
                return g
        raise ConfigError(f"unknown group {name!r}; groups: {sorted(g.name for g in self.groups)}")

    def device(self, name: str) -> Device:
        for d in self.devices:
            if d.name == name:
                return d
        raise ConfigError(f"unknown device {name!r}; devices: {sorted(d.name for d in self.devices)}")

    def group_of(self, device: str) -> Group:
        return self.group(self.device(device).group)

    def waves(self) -> list[tuple[Device, ...]]:
        """Devices by wave, wave 0 (the canaries) first."""
        last = max(d.wave for d in self.devices)
        return [tuple(d for d in self.devices if d.wave == w) for w in range(last + 1)]

    def select(self, devices: list[str] | None = None, groups: list[str] | None = None) -> tuple[Device, ...]:
        """The devices named, plus every device of the groups named (all devices if neither is given), in
        inventory order; an unknown name is a ConfigError before anything is touched."""
        if not devices and not groups:
            return self.devices
        wanted = {self.device(n).name for n in devices or []}
        wanted |= {d.name for g in groups or [] for d in self.devices if d.group == self.group(g).name}
        return tuple(d for d in self.devices if d.name in wanted)

    def to_dict(self) -> dict[str, Any]:
        groups = {g.name: {k: v for k, v in dataclasses.asdict(g).items() if k != "name"} for g in self.groups}
        return {"groups": groups, "devices": [dataclasses.asdict(d) for d in self.devices]}

    @classmethod
    def from_dict(cls, raw: Any, where: str = "fleet") -> Inventory:
        _require(isinstance(raw, dict), f"{where}: expected an object with 'groups' and 'devices'")
        _keys(raw, {"groups", "devices"}, where, required={"groups", "devices"})
        _require(isinstance(raw["groups"], dict), f"{where}: 'groups' must be an object of group name -> options")
        _require(isinstance(raw["devices"], list), f"{where}: 'devices' must be a list of objects")
        groups = tuple(_group(name, spec, f"{where}: group {name!r}") for name, spec in raw["groups"].items())
        devices = tuple(_device(spec, f"{where}: devices[{i}]") for i, spec in enumerate(raw["devices"]))
        return cls(groups=groups, devices=devices)


def load_inventory(path: str | Path | None = None) -> Inventory:
    """Read and validate a fleet file: ``path``, else ``$EDGEOPS_FLEET``, else the repo's config/fleet.json."""
    path = Path(path or os.environ.get(names.ENV_FLEET) or DEFAULT_FILE)
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"fleet file {path} not found: pass --file or set {names.ENV_FLEET}") from None
    except ValueError as exc:
        raise ConfigError(f"fleet file {path}: not valid JSON ({exc})") from None
    try:
        return Inventory.from_dict(raw, where=f"fleet file {path}")
    except ConfigError as exc:
        msg = str(exc)
        raise ConfigError(
            msg if msg.startswith("fleet file") else f"fleet file {path}: {msg.removeprefix('fleet: ')}"
        ) from None


def _unique(values: list[str], what: str) -> None:
    dups = sorted({v for v in values if values.count(v) > 1})
    _require(not dups, f"fleet: duplicate {what}(s) {dups}: each must appear once")


def _keys(raw: dict, allowed: set[str], where: str, required: set[str] = frozenset()) -> None:
    unknown, missing = sorted(set(raw) - allowed), sorted(required - set(raw))
    _require(not unknown, f"{where}: unknown key(s) {unknown}; known: {sorted(allowed)}")
    _require(not missing, f"{where}: missing key(s) {missing}")


def _group(name: str, spec: Any, where: str) -> Group:
    _require(isinstance(spec, dict), f"{where}: expected an object")
    _keys(spec, {f.name for f in dataclasses.fields(Group)} - {"name"}, where, required={"budgets"})
    budgets = spec["budgets"]
    _require(isinstance(budgets, dict), f"{where}: budgets must be an object")
    _keys(budgets, {f.name for f in dataclasses.fields(Budgets)}, f"{where}: budgets",
          required={f.name for f in dataclasses.fields(Budgets)})
    try:
        numbers = {k: float(v) for k, v in budgets.items() if not isinstance(v, bool)}
        _require(len(numbers) == len(budgets), f"{where}: budgets must be numbers")
        options = spec.get("delegate_options", {})
        traffic = spec.get("traffic_canary")  # absent or null: off
        _require(isinstance(options, dict), f"{where}: delegate_options must be an object of strings")
        return Group(name=name, budgets=Budgets(**numbers), threads=spec.get("threads", 1),
                     delegate=str(spec.get("delegate", XNNPACK)),
                     delegate_options={str(k): str(v) for k, v in options.items()},
                     app=AppHooks.from_dict(spec.get("app", {})),
                     drift=DriftSettings.from_dict(spec.get("drift", {})),
                     traffic_canary=None if traffic is None else TrafficCanary.parse(traffic))
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _device(spec: Any, where: str) -> Device:
    _require(isinstance(spec, dict), f"{where}: expected an object")
    _keys(spec, {f.name for f in dataclasses.fields(Device)}, where, required={"name", "group", "wave"})
    where = f"{where} ({spec['name']!r})"
    _require(isinstance(spec["optional"] if "optional" in spec else False, bool), f"{where}: optional: true/false")
    try:
        return Device(**spec)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
