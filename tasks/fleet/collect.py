"""Data back from one device: edgeops-serve's final telemetry and its samples, into MinIO, exactly once in effect.

The device is read over the pinned-key SSH transport (``tasks.device.transport``): one command lists what may
be taken (``collect_listing``), one SFTP session downloads it, and every file is checked against a sha256 the
device gave before its bytes left (samples carry theirs in the name; telemetry files are hashed on the device).
Each file is uploaded through the one storage module: telemetry to ``telemetry/<device>/<release>/<name>`` in the
artifacts bucket, samples to ``<dataset>/_incoming/<device>/<release>/<name>`` (``tasks.core.keys``).

**Exactly once in effect.** A file is deleted on the device only after a HEAD of its object shows the same
sha256 and size. Keys depend only on the file (device, release, name), so a re-run after a cut connection
re-uploads to the same key; it first HEADs the key and skips the upload when the same bytes are already there,
so nothing is duplicated (not even an object version). A file written during collection is not taken: the
listing is a snapshot, dot files are writes in progress and telemetry is only taken once ``"final": true``.

**Which dataset.** A sample goes to the dataset the release's model was trained on: the ``data.source`` of the
release's run (its manifest). A ``tfds:<name>`` source has no folder in the store: its samples go to
``s3://<datasets bucket>/<name>``. ``dataset`` overrides both (``edgeops collect --dataset``). A release whose run
has no manifest keeps its samples on the device and reports an error that says so.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from shlex import quote
from typing import Any

from tasks.core import keys
from tasks.core.exceptions import ConfigError, DeviceError, EdgeOpsError, StorageError
from tasks.core.names import DATASETS_BUCKET
from tasks.core.storage import ArtifactStore
from tasks.device import layout
from tasks.fleet.collect_listing import TELEMETRY, DeviceFile, list_device, sha256_bytes

log = logging.getLogger(__name__)
DELETE_BATCH = 200  # files per ``rm`` on the device
MAX_ERRORS_KEPT = 20  # the record keeps the first errors (a dead store fails every file the same way)


@dataclass(frozen=True)
class CollectResult:
    """What one collection of one device did. ``files``/``bytes``: uploaded, confirmed and deleted on the device;
    ``skipped``: left on the device for the next run (changed or gone since the listing, unsafe names);
    ``errors``: files that failed (first ``MAX_ERRORS_KEPT`` messages; ``failed`` counts them all)."""

    device: str
    files: int
    bytes: int
    telemetry: int
    samples: int
    skipped: int
    failed: int
    errors: tuple[str, ...]
    seconds: float

    @property
    def ok(self) -> bool:
        return self.failed == 0

    def summary(self) -> str:
        head = (f"{self.device}: collected {self.files} file(s), {self.bytes} bytes ({self.telemetry} telemetry, "
                f"{self.samples} samples) in {self.seconds:.1f}s; {self.skipped} skipped, {self.failed} failed")
        return head + "".join(f"\n  error: {e}" for e in self.errors)

    def to_xcom(self) -> dict[str, Any]:
        return {"device": self.device, "files": self.files, "bytes": self.bytes, "telemetry": self.telemetry,
                "samples": self.samples, "skipped": self.skipped, "failed": self.failed,
                "errors": list(self.errors), "seconds": self.seconds}

    @classmethod
    def from_xcom(cls, raw: dict[str, Any]) -> CollectResult:
        return cls(**{**raw, "errors": tuple(raw["errors"])})


@dataclass(frozen=True)
class _Tally:
    """Running counts of one collection (replaced, never mutated)."""

    files: int = 0
    bytes: int = 0
    telemetry: int = 0
    samples: int = 0
    skipped: int = 0
    failed: int = 0
    errors: tuple[str, ...] = ()

    def done(self, f: DeviceFile) -> _Tally:
        is_tel = f.kind == TELEMETRY
        return replace(self, files=self.files + 1, bytes=self.bytes + f.size, telemetry=self.telemetry + is_tel,
                       samples=self.samples + (not is_tel))

    def skip(self, f: DeviceFile, why: str) -> _Tally:
        log.info("skipped %s: %s", f.remote, why)
        return replace(self, skipped=self.skipped + 1)

    def fail(self, message: str) -> _Tally:
        log.warning("%s", message)
        kept = self.errors + (message,) if len(self.errors) < MAX_ERRORS_KEPT else self.errors
        return replace(self, failed=self.failed + 1, errors=kept)


def collect_device(transport: Any, store: ArtifactStore, dataset: str = "", workers: int = 8,
                   datasets_bucket: str = DATASETS_BUCKET) -> CollectResult:
    """Collect one device (``transport``: an ``SshTransport``, connected or not) into ``store``'s bucket
    (telemetry) and the samples' datasets. Raises DeviceError when the connection is lost: whatever was
    confirmed before is deleted or re-confirmed by the next run, nothing is lost or duplicated."""
    started = time.monotonic()
    state = f"{transport.root.rstrip('/')}/{layout.SERVE_DATA}"
    listing = list_device(transport, state)
    tally = _Tally(skipped=len(listing.unsafe))
    for name in listing.unsafe:
        log.warning("%s: not collecting %r: not a name edgeops-serve writes", transport.who, name)
    where = _Destinations(store, transport.device, dataset, datasets_bucket)
    confirmed: list[DeviceFile] = []
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="collect") as pool:
        pending: list[tuple[DeviceFile, Future]] = []
        with _Sftp(transport) as sftp:
            for f in listing.files:
                target = where(f)
                if isinstance(target, str):
                    tally = tally.fail(target)
                    continue
                data = sftp.read(f"{state}/{f.remote}")
                if data is None:
                    tally = tally.skip(f, "gone since the listing (evicted by the service's budget)")
                    continue
                if sha256_bytes(data) != f.sha256 or len(data) != f.size:
                    tally = (tally.skip(f, "rewritten since the listing") if f.kind == TELEMETRY else
                             tally.fail(f"{transport.device}: {f.remote}: the bytes read do not match the sha256 in "
                                        "its name; left on the device"))
                    continue
                pending.append((f, pool.submit(_upload, target[0], target[1], data, f.sha256)))
                tally, pending = _harvest(tally, pending, confirmed, wait=False)
                if len(confirmed) >= DELETE_BATCH:
                    _delete(transport, state, confirmed)
                    tally = _count_deleted(tally, confirmed)
        tally, pending = _harvest(tally, pending, confirmed, wait=True)
    _delete(transport, state, confirmed)
    tally = _count_deleted(tally, confirmed)
    result = CollectResult(device=transport.device, seconds=round(time.monotonic() - started, 3),
                           **{k: getattr(tally, k) for k in ("files", "bytes", "telemetry", "samples", "skipped",
                                                               "failed", "errors")})
    log.info("%s", result.summary())
    return result


class _Destinations:
    """Where each file goes: (store of the bucket, key), or why it stays; a sample's dataset is resolved once per
    release."""

    def __init__(self, store: ArtifactStore, device: str, dataset: str, datasets_bucket: str) -> None:
        self.store, self.device, self.dataset, self.datasets_bucket = store, device, dataset, datasets_bucket
        self._datasets: dict[str, tuple[ArtifactStore, str] | str] = {}

    def __call__(self, f: DeviceFile) -> tuple[ArtifactStore, str] | str:
        if f.kind == TELEMETRY:
            return self.store, keys.telemetry(self.device, f.release, f.name)
        if f.release not in self._datasets:
            self._datasets[f.release] = self._dataset_of(f.release)
        found = self._datasets[f.release]
        if isinstance(found, str):
            return found
        bucket_store, prefix = found
        return bucket_store, keys.incoming_sample(prefix, self.device, f.release, f.name)

    def _dataset_of(self, release: str) -> tuple[ArtifactStore, str] | str:
        try:
            uri = self.dataset or dataset_of_release(self.store, release, self.datasets_bucket)
            bucket, prefix = keys.parse_s3_uri(uri)
        except (StorageError, ConfigError) as exc:
            return f"{self.device}: samples of release {release} stay on the device: {exc}"
        if not prefix.strip("/"):
            return f"{self.device}: dataset {uri!r} names no folder; samples of release {release} stay on the device"
        return ArtifactStore(self.store.client, bucket), prefix


def dataset_of_release(store: ArtifactStore, release: str, datasets_bucket: str = DATASETS_BUCKET) -> str:
    """The ``s3://`` dataset a release's samples belong to: its run's ``data.source`` (``tfds:<name>`` ->
    ``s3://<datasets_bucket>/<name>``). StorageError when the run has no manifest in ``store``."""
    from tasks.fleet.records import split_release
    from tasks.registry.runs import resolve

    run_id, _variant = split_release(release)
    source = resolve(store, run_id or release).source or ""
    if source.startswith(keys.S3_SCHEME):
        return source.rstrip("/")
    if source.startswith("tfds:") and source[5:].strip("/"):
        return f"{keys.S3_SCHEME}{datasets_bucket}/{source[5:].strip('/').replace('/', '-')}"
    raise ConfigError(f"run {run_id} has data.source {source!r}, which is neither s3:// nor tfds:; pass --dataset")


def _upload(store: ArtifactStore, key: str, data: bytes, sha256: str) -> str | None:
    """Put ``data`` at ``key`` unless the same bytes are there, then confirm by HEAD; None or what went wrong."""
    try:
        there = store.find(key)
        if there is None or there.sha256 != sha256 or there.size_bytes != len(data):
            store.put_bytes(key, data)
            there = store.find(key)
    except EdgeOpsError as exc:
        return f"upload to s3://{store.bucket}/{key} failed: {exc}"
    if there is None or there.sha256 != sha256 or there.size_bytes != len(data):
        return f"s3://{store.bucket}/{key}: not confirmed by HEAD after the upload (got {there}); kept on the device"
    return None


def _harvest(tally: _Tally, pending: list[tuple[DeviceFile, Future]], confirmed: list[DeviceFile],
             wait: bool) -> tuple[_Tally, list[tuple[DeviceFile, Future]]]:
    """Move finished uploads to ``confirmed`` (or count them failed); return the ones still running."""
    still = []
    for f, fut in pending:
        if not wait and not fut.done():
            still.append((f, fut))
            continue
        problem = fut.result()
        if problem:
            tally = tally.fail(problem)
        else:
            confirmed.append(f)
    return tally, still


def _delete(transport: Any, state: str, confirmed: list[DeviceFile]) -> None:
    """``rm`` the confirmed files on the device (names were checked by the listing: no quoting surprises)."""
    for i in range(0, len(confirmed), DELETE_BATCH):
        batch = " ".join(quote(f.remote) for f in confirmed[i:i + DELETE_BATCH])
        transport.run(f"cd {quote(state)} && rm -f -- {batch}", timeout=120,
                      what=f"deleting {len(confirmed[i:i + DELETE_BATCH])} collected file(s)")


def _count_deleted(tally: _Tally, confirmed: list[DeviceFile]) -> _Tally:
    for f in confirmed:
        tally = tally.done(f)
    confirmed.clear()
    return tally


class _Sftp:
    """One SFTP session for the downloads; ``read`` returns None for a file that is gone, raises DeviceError
    when the connection is lost."""

    def __init__(self, transport: Any) -> None:
        self.transport, self.sftp = transport, None

    def __enter__(self) -> _Sftp:
        if self.transport.client is None:
            self.transport.connect()
        try:
            self.sftp = self.transport.client.open_sftp()
        except Exception as exc:  # noqa: BLE001 - SSHException, EOFError, OSError
            raise DeviceError(f"{self.transport.who}: cannot open SFTP: {exc}") from exc
        self.sftp.get_channel().settimeout(60)
        return self

    def read(self, path: str) -> bytes | None:
        try:
            with self.sftp.open(path, "rb") as fh:
                return fh.read()
        except FileNotFoundError:
            return None
        except Exception as exc:  # noqa: BLE001 - SSHException, EOFError, OSError: the connection is gone
            raise DeviceError(f"{self.transport.who}: SFTP download of {path} failed ({type(exc).__name__}: "
                              f"{exc}); the next collection takes it") from exc

    def __exit__(self, *exc: object) -> None:
        try:
            self.sftp.close()
        except Exception:  # noqa: BLE001 - closing a dead session
            pass
