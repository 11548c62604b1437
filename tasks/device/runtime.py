"""The device runtime: the pinned packages a device venv holds (no TensorFlow on a Pi), and the options LiteRT
runs a release with (``RuntimeOptions``: threads and delegate, one fleet group's runtime options).

``RUNTIME_PACKAGES`` is ai-edge-litert with the numpy it supports and every dependency pinned; they exist as
wheels for CPython 3.11 (Debian bookworm, Raspberry Pi OS 64-bit) on x86_64 and aarch64. Devices never install
these specs directly: ``scripts/lock_device_runtime.py`` turns them into ``runtime.lock`` (one sha256 per arch
per wheel, ``tasks.device.runtime_lock``), and a device installs that lock with ``--require-hashes``, so two
devices provisioned a month apart run the same bytes. There is no fallback package set: a lock that does not
install is an error with pip's reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from tasks.core.exceptions import ConfigError
from tasks.core.results import Record
from tasks.device.runtime_lock import RuntimeLock, load_lock

XNNPACK = "xnnpack"  # LiteRT's default CPU delegate; anything else is an external delegate library
MAX_THREADS = 64

RUNTIME_PACKAGES: tuple[str, ...] = (
    "ai-edge-litert==2.3.0",
    "numpy==2.4.6",
    "backports.strenum==1.2.8",
    "flatbuffers==25.12.19",
    "ml_dtypes==0.6.0",
    "protobuf==7.36.2",
    "tqdm==4.70.1",
    "typing_extensions==4.16.0",
)
READY_MARKER = ".edgeops-ready"  # written last into a runtime dir: without it the venv is half-built
SMOKE_THREADS = 1  # the deploy's smoke test when no group runtime is given (load + one invoke)


@cache
def runtime_lock() -> RuntimeLock:
    """The committed lock, checked to hold exactly ``RUNTIME_PACKAGES`` (a pin changed without re-locking is one
    ConfigError that says how to re-lock)."""
    lock = load_lock()
    lock.require_pins(RUNTIME_PACKAGES)
    return lock


def runtime_key() -> str:
    """The venv directory's name, from the lock's content: a new lock gets a new venv beside the old one."""
    return runtime_lock().key


def _require(cond: bool, message: str) -> None:
    if not cond:
        raise ConfigError(f"runtime options: {message}")


def _printable(text: str) -> bool:
    return text.isprintable() and "\x00" not in text


@dataclass(frozen=True)
class RuntimeOptions(Record):
    """How LiteRT runs a release on a device: interpreter threads and the delegate.

    ``delegate`` is ``xnnpack`` (LiteRT's built-in default) or the absolute path of an external delegate library
    on the device (e.g. Arm NN's ``libarmnnDelegate.so``, a Coral's ``/usr/lib/libedgetpu.so.1``), which
    bench.py loads with ``load_delegate(path, delegate_options)``. A library that does not load or apply fails
    the smoke test and the benchmark (``DelegateError``): never a silent fallback to the CPU.
    ``bench_args()`` is the one place these options become bench.py arguments. A fleet group gives them
    (``tasks.fleet.inventory.Group.runtime``); they travel typed in ``DeviceTask.runtime``.
    """

    threads: int
    delegate: str = XNNPACK
    delegate_options: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _require(isinstance(self.threads, int) and not isinstance(self.threads, bool)
                 and 1 <= self.threads <= MAX_THREADS, f"threads={self.threads!r}: must be an integer 1..{MAX_THREADS}")
        _require(isinstance(self.delegate, str) and (self.delegate == XNNPACK or (
            self.delegate.startswith("/") and ".so" in self.delegate and _printable(self.delegate))),
            f"delegate={self.delegate!r}: use {XNNPACK!r} or the absolute path of an external delegate library "
            "on the device, e.g. /usr/lib/libedgetpu.so.1")
        _require(isinstance(self.delegate_options, Mapping), "delegate_options must be an object of strings")
        _require(not self.delegate_options or self.external,
                 "delegate_options only apply to an external delegate library")
        for key, value in self.delegate_options.items():
            _require(isinstance(key, str) and isinstance(value, str) and bool(key) and "=" not in key
                     and _printable(key) and _printable(value),
                     f"delegate_options[{key!r}]={value!r}: keys and values are printable strings, keys without '='")
        object.__setattr__(self, "delegate_options", dict(sorted(self.delegate_options.items())))

    @property
    def external(self) -> bool:
        return self.delegate != XNNPACK

    @classmethod
    def from_xcom(cls, raw: Any) -> RuntimeOptions:
        """From ``to_xcom()`` (e.g. ``DeployResult.options``); unknown or missing keys are one ConfigError."""
        _require(isinstance(raw, Mapping), f"expected an object, got {type(raw).__name__}")
        unknown = sorted(set(raw) - {"threads", "delegate", "delegate_options"})
        _require(not unknown and "threads" in raw,
                 f"unknown key(s) {unknown} or no 'threads'; expected threads, delegate, delegate_options")
        return cls(threads=raw["threads"], delegate=raw.get("delegate", XNNPACK),
                   delegate_options=dict(raw.get("delegate_options", {})))

    def bench_args(self) -> list[str]:
        """bench.py's arguments for these options. The built-in delegate adds no ``--delegate`` (bench.py's
        default), so the smoke command stays valid for releases shipped with an older bench.py (a rollback)."""
        args = ["--threads", str(self.threads)]
        if self.external:
            args += ["--delegate", self.delegate]
            for key, value in self.delegate_options.items():
                args += ["--delegate-option", f"{key}={value}"]
        return args
