"""One home for the on-device layout of a deploy root and the deploy protocol's exit codes.

A device's deploy root (``extra.deploy_root`` of its connection)::

    <root>/current -> releases/<release_id>     the release LiteRT runs (a symlink, switched atomically)
    <root>/releases/<release_id>/               one immutable release: SHA256SUMS, release.json, bench.py,
                                                sample.npz, <variant>.tflite, model.tflite -> <variant>.tflite
    <root>/.staging/<uuid>/                     an upload being verified (never a name derived from the release)
    <root>/.lock                                the deploy lock (flock)
    <root>/runtimes/<runtime_key>/              hash-locked LiteRT venvs (``tasks.device.runtime``), own .lock
    <root>/trust/keys/<key_id>.pub              the public keys the device accepts (pinned by each deploy)
    <root>/trust/verify_release.py              the statement verifier (``tasks.device.verify_release``)
    <root>/trust/sequence.json                  the highest statement sequence accepted per key (fsync'd)
    <root>/serve/                               edgeops-serve (serve.py, serve_model.py, serve_records.py), provisioned
                                                by each deploy; serve.env (its arguments), runtime -> the venv dir
    <root>/serve-data/                          its state: endpoint.json (pid, port, socket), serve.sock, serve.log,
                                                telemetry/, samples/ (collected by edgeops_collect, then deleted)

Every release also holds ``STATEMENT.json``, the signed statement it was accepted with (``tasks.device.signing``).

The device side (the Airflow plugin's device_release.py) and ``edgeops fleet status --check`` both read
these names from here.
"""

from __future__ import annotations

import posixpath
from enum import IntEnum

CURRENT = "current"
CURRENT_TMP = ".current.tmp"  # the new symlink, renamed over CURRENT
RELEASES = "releases"
STAGING = ".staging"
LOCK = ".lock"
RUNTIMES = "runtimes"  # default runtime root under the deploy root
SUMS = "SHA256SUMS"
RELEASE_META = "release.json"
MODEL = "model.tflite"  # a symlink to the current variant's <mode>.tflite
BENCH = "bench.py"
SAMPLE = "sample.npz"
TFLITE_SUFFIX = ".tflite"
TRUST = "trust"
TRUST_KEYS = "keys"
STATEMENT = "STATEMENT.json"
VERIFIER = "verify_release.py"
SERVE = "serve"  # edgeops-serve's code dir under the deploy root
SERVE_FILES = ("serve.py", "serve_model.py", "serve_records.py")  # from tasks/device/, kept in one directory
SERVE_ENV = "serve.env"  # EDGEOPS_SERVE_ARGS=... (the systemd unit's EnvironmentFile, read by the stand-in's start)
SERVE_RUNTIME = "runtime"  # serve/runtime -> the runtime venv DIR (a link to bin/python would lose the venv)
SERVE_DATA = "serve-data"  # its state dir (serve.STATE): telemetry/<release>/*.json, samples/<release>/*.npz
SERVE_TELEMETRY = "telemetry"
SERVE_SAMPLES = "samples"
ENDPOINT = "endpoint.json"  # in SERVE_DATA: {"pid", "http_port", "socket"} once it listens
SERVE_LOG = "serve.log"  # in SERVE_DATA: output of the supervised process started by the deploy
REPAIR_PREFIX = ".repair-"  # releases/.repair-<uuid>: what `current` shows while a damaged release is rebuilt


def variant_file(mode: str) -> str:
    """The file of one variant inside a release."""
    return f"{mode}{TFLITE_SUFFIX}"


def release_path(root: str, release_id: str) -> str:
    """``<root>/releases/<release_id>``."""
    return posixpath.join(root, RELEASES, release_id)


def serve_dir(root: str) -> str:
    return posixpath.join(root, SERVE)


def serve_data(root: str) -> str:
    return posixpath.join(root, SERVE_DATA)


def release_link(release_id: str) -> str:
    """What ``current`` points at: a path relative to the deploy root."""
    return posixpath.join(RELEASES, release_id)


class DeployExit(IntEnum):
    """Exit codes of the deploy protocol's device-side scripts: which step failed."""

    CHECKSUMS = 10  # sha256sum -c SHA256SUMS failed: corrupted on the way or on disk
    SMOKE = 11  # bench.py --smoke failed (or a delegate did not load)
    OTHER = 12  # a file operation (cd, ln, mv, sync) failed
    LOST_LOCK = 13  # the lock helper is gone (connection dropped): stop before a rename
    UNTRUSTED = 14  # verify_release.py refused the signed statement (key, signature, expiry, replay)
