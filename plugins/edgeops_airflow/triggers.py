"""Retrain when new data lands: a debounced MinIO bucket-notification trigger for Airflow's ``AssetWatcher``.

Airflow 3 event-driven scheduling: an ``Asset`` carries ``AssetWatcher``s whose trigger (a ``BaseEventTrigger``)
runs in the **triggerer**; every ``TriggerEvent`` it yields becomes an asset event, and every DAG scheduled on that
asset (here ``edgeops_nightly``, through ``AssetOrTimeSchedule``) gets a run. This trigger listens to MinIO's
``ListenBucketNotification`` stream with the ``minio`` SDK and yields ONE event per burst of uploads, once the
prefix has been quiet for ``quiet_seconds`` (a steady trickle still fires after ``max_wait_seconds``). It never
returns, so nothing is missed between two bursts.

The notification stream is not enough on its own: the pinned MinIO server does not flush it (its S3 middleware's
response writer has no ``Flush``), so records arrive in ~4 KB blocks and the tail of a burst, or one lone upload,
can sit in the server's buffer indefinitely. So the trigger keeps a listing of the prefix (key -> ETag): before it
fires it lists once more (the *settle check*: the event counts every new key, and a tail the stream has not
delivered yet extends the burst instead of making a second one), and while idle it lists every
``rescan_seconds`` (0 = never) so a lone upload still fires. Keys are counted once, by key and ETag. After each
event the newest LastModified is kept in Airflow's asset state store (AIP-103), so objects uploaded while the
triggerer was down make an event when it comes back instead of becoming the new baseline.

The SDK's iterator blocks, so it runs in a daemon thread that hands records to the event loop. Credentials come
from the Airflow connection (``names.MINIO_CONN_ID``: login, password, ``extra.endpoint_url``); the account needs
``s3:ListenBucketNotification`` and ``s3:ListBucket`` on the bucket. ``minio``/``urllib3`` are imported in ``run``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote_plus, urlsplit

from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from tasks.core import keys, names
from tasks.core.exceptions import ConfigError, StorageError
from tasks.core.results import NewDataEvent

log = logging.getLogger(__name__)

OBJECT_CREATED = "s3:ObjectCreated:*"
KEYS_IN_EVENT = 20
# S3 error codes a reconnect cannot fix: the trigger fails with a message that says what to fix
FATAL_S3_CODES = ("AccessDenied", "NoSuchBucket", "InvalidAccessKeyId", "SignatureDoesNotMatch")
RECONNECT_MAX_SECONDS = 30.0
WATERMARK = "newest_last_modified"  # asset state store key: epoch seconds of the newest object already reported
Item = tuple[str, str] | BaseException  # (key, etag) from the listener thread, or its fatal error


class _Stopped(Exception):
    """Raised inside the listener thread's HTTP pool once the trigger stops, so the SDK cannot reconnect."""


class MinioNewObjectsTrigger(BaseEventTrigger):
    """One ``NewDataEvent`` per burst of objects created (or overwritten) under ``s3://<bucket>/<prefix>``."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        conn_id: str = names.MINIO_CONN_ID,
        quiet_seconds: float = names.DEFAULT_NEW_DATA_QUIET_SECONDS,
        max_wait_seconds: float = names.DEFAULT_NEW_DATA_MAX_WAIT_SECONDS,
        rescan_seconds: float = names.DEFAULT_NEW_DATA_RESCAN_SECONDS,
    ) -> None:
        super().__init__()
        if not bucket or "/" in bucket:
            raise ConfigError(f"new-data trigger: bucket={bucket!r}: give a bucket name without '/'")
        if not 0 < quiet_seconds <= max_wait_seconds:
            raise ConfigError(
                f"new-data trigger: quiet_seconds={quiet_seconds}, max_wait_seconds={max_wait_seconds}: "
                "need 0 < quiet_seconds <= max_wait_seconds"
            )
        if rescan_seconds < 0:
            raise ConfigError(f"new-data trigger: rescan_seconds={rescan_seconds}: must be >= 0 (0 = never)")
        self.bucket, self.prefix, self.conn_id = bucket, prefix, conn_id
        self.quiet_seconds, self.max_wait_seconds = float(quiet_seconds), float(max_wait_seconds)
        self.rescan_seconds = float(rescan_seconds)
        self._stopping = threading.Event()
        self._stream: Any = None
        self._known: dict[str, str] = {}  # key -> ETag of every object seen so far
        self._newest = 0.0  # LastModified (epoch s) of the newest object in the last listing
        self._listed: dict[str, float] = {}  # key -> LastModified of the last listing

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return f"{type(self).__module__}.{type(self).__qualname__}", {
            "bucket": self.bucket,
            "prefix": self.prefix,
            "conn_id": self.conn_id,
            "quiet_seconds": self.quiet_seconds,
            "max_wait_seconds": self.max_wait_seconds,
            "rescan_seconds": self.rescan_seconds,
        }

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from airflow.sdk import BaseHook

        self._stopping = threading.Event()  # a fresh one per run: a listener of an earlier run stays stopped
        client = _client(await BaseHook.aget_connection(self.conn_id), self.conn_id, self._stopping)
        queue: asyncio.Queue[Item] = asyncio.Queue()
        listener = threading.Thread(
            target=self._listen, args=(client, asyncio.get_running_loop(), queue, self._stopping), daemon=True,
            name=f"minio-listen-{self.bucket}/{self.prefix}",
        )
        listener.start()
        self._known = dict(await self._rescan(client))  # the baseline: what is already there is not new
        missed = await self._missed()
        for key in missed:
            queue.put_nowait((key, self._known.pop(key)))
        log.info("watching s3://%s/%s (%d objects, %d new since the last event; quiet %.0fs, max wait %.0fs, "
                 "rescan %.0fs)", self.bucket, self.prefix, len(self._known) + len(missed), len(missed),
                 self.quiet_seconds, self.max_wait_seconds, self.rescan_seconds)
        try:
            while True:
                event = await self._burst(queue, client)
                log.info("new data: %d object(s) under s3://%s/%s", event.objects, self.bucket, self.prefix)
                yield TriggerEvent(event.to_xcom())
                await self._save_watermark()
        finally:
            self._stop()

    async def cleanup(self) -> None:
        self._stop()

    # --- the debounce (event loop side) --------------------------------------------------------------------
    async def _burst(self, queue: asyncio.Queue[Item], client: Any) -> NewDataEvent:
        """Wait for new keys, then collect them until quiet_seconds pass without one and a last listing finds
        nothing more (or max_wait_seconds passed)."""
        burst: dict[str, None] = {}  # an ordered set of new keys
        listed_keys: list[str] = []
        while not burst:
            try:
                self._add(burst, [await _next(queue, self.rescan_seconds or None)])
            except TimeoutError:
                listed_keys = self._add(burst, await self._rescan(client))
        first_seen = last_seen = _now()
        deadline = time.monotonic() + self.max_wait_seconds
        quiet_until = time.monotonic() + self._quiet_left(listed_keys)
        while True:
            listed = (wait := min(quiet_until, deadline) - time.monotonic()) <= 0
            if not listed:
                try:
                    found = [await _next(queue, wait)]
                except TimeoutError:
                    listed = True
            if listed:
                found = await self._rescan(client)  # the settle check
            new = self._add(burst, found)
            if (listed and not new) or time.monotonic() >= deadline:
                break
            if not new:  # a notification for a key a listing already counted: keep waiting
                continue
            last_seen = _now()
            quiet_until = time.monotonic() + self._quiet_left(new if listed else [])
        keys = tuple(list(burst)[:KEYS_IN_EVENT])
        return NewDataEvent(bucket=self.bucket, prefix=self.prefix, objects=len(burst), keys=keys,
                            first_seen=first_seen, last_seen=last_seen, quiet_seconds=self.quiet_seconds)

    def _quiet_left(self, listed_keys: list[str]) -> float:
        """The quiet time still to wait: keys a listing found were uploaded a while ago, so their quiet time
        counts from their LastModified (keys from notifications are fresh: the whole quiet period)."""
        if not listed_keys:
            return self.quiet_seconds
        age = time.time() - max(self._listed.get(k, 0.0) for k in listed_keys)
        return self.quiet_seconds - min(max(age, 0.0), self.quiet_seconds)

    def _add(self, burst: dict[str, None], found: list[tuple[str, str]]) -> list[str]:
        """Add the keys whose ETag is new to the burst; returns them. Device samples under ``_incoming/``
        (tasks/fleet/collect.py) are not new data: only a labelled sample, moved into ``<class>/``, is."""
        new = []
        for key, etag in found:
            if keys.is_incoming(key, self.prefix):
                continue
            if self._known.get(key) != etag:
                self._known[key] = etag
                new.append(key)
                burst[key] = None
        return new

    async def _rescan(self, client: Any) -> list[tuple[str, str]]:
        """(key, etag) of every object under the prefix; remembers each one's LastModified."""
        objects = await asyncio.to_thread(
            lambda: [o for o in client.list_objects(self.bucket, prefix=self.prefix, recursive=True)
                     if not o.is_dir and not keys.is_incoming(o.object_name, self.prefix)]
        )
        self._listed = {o.object_name: o.last_modified.timestamp() if o.last_modified else 0.0 for o in objects}
        self._newest = max([self._newest, *self._listed.values()])
        return [(o.object_name, (o.etag or "").strip('"')) for o in objects]

    async def _missed(self) -> list[str]:
        """Keys newer than the watermark the last run of this watcher stored: uploads while it was not running.
        Outside the triggerer (no asset state store) and on the very first start, nothing is missed."""
        if self.asset_state_store is None:
            return []
        mark = await self.asset_state_store.aget(WATERMARK)
        if not isinstance(mark, int | float):
            await self._save_watermark()
            return []
        return [key for key, modified in self._listed.items() if modified > mark]

    async def _save_watermark(self) -> None:
        if self.asset_state_store is not None:
            await self.asset_state_store.aset(WATERMARK, self._newest)

    # --- the blocking listener (thread side) ---------------------------------------------------------------
    def _listen(self, client: Any, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[Item],
                stopping: threading.Event) -> None:
        """Feed created keys to the loop; reconnect with backoff on network errors; stop on fatal S3 errors."""
        from minio.error import S3Error
        from urllib3.exceptions import ReadTimeoutError

        backoff = 1.0
        while not stopping.is_set():
            try:
                self._stream = client.listen_bucket_notification(self.bucket, prefix=self.prefix,
                                                                 events=(OBJECT_CREATED,))
                for item in self._stream:
                    for record in item.get("Records") or []:
                        obj = record["s3"]["object"]
                        _put(loop, queue, (unquote_plus(obj["key"]), str(obj.get("eTag", "")).strip('"')))
                    backoff = 1.0
            except _Stopped:
                return
            except ReadTimeoutError:  # nothing for read-timeout seconds (a server that buffers keep-alives)
                continue
            except S3Error as exc:
                if exc.code in FATAL_S3_CODES:
                    _put(loop, queue, StorageError(
                        f"cannot listen to s3://{self.bucket}/{self.prefix} with connection {self.conn_id!r}: "
                        f"{exc.code} ({exc.message}). Give its account s3:ListenBucketNotification on "
                        f"arn:aws:s3:::{self.bucket} and check that the bucket exists"))
                    return
                log.warning("listening on s3://%s failed (%s); reconnecting in %.0fs", self.bucket, exc, backoff)
            except Exception as exc:  # network: MinIO restarting, connection reset; reconnect
                if stopping.is_set():
                    return
                log.warning("listening on s3://%s failed (%s); reconnecting in %.0fs", self.bucket, exc, backoff)
            stopping.wait(backoff)
            backoff = min(backoff * 2, RECONNECT_MAX_SECONDS)

    def _stop(self) -> None:
        """Stop the listener now: its pool refuses new requests, and the read it is blocked in is shut down
        (urllib3's ``HTTPResponse.shutdown`` is meant to be called from another thread); otherwise the thread
        would linger until the read timeout."""
        self._stopping.set()
        stream, self._stream = self._stream, None
        response = getattr(stream, "_response", None)  # the minio SDK's EventIterable keeps it there
        if response is not None:
            with contextlib.suppress(Exception):
                response.shutdown()


async def _next(queue: asyncio.Queue[Item], timeout: float | None) -> tuple[str, str]:
    item = await asyncio.wait_for(queue.get(), timeout)
    if isinstance(item, BaseException):
        raise item
    return item


def _put(loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[Item], item: Item) -> None:
    try:
        loop.call_soon_threadsafe(queue.put_nowait, item)
    except RuntimeError:  # the loop is closed: the trigger is gone
        raise _Stopped() from None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _client(conn: Any, conn_id: str, stopping: threading.Event) -> Any:
    """A ``Minio`` client from an aws-type connection, whose HTTP pool refuses requests once ``stopping`` is set
    (the SDK's notification iterator reconnects by itself when its response closes)."""
    import urllib3
    from minio import Minio

    endpoint = (conn.extra_dejson or {}).get("endpoint_url")
    if not endpoint or not conn.login or not conn.password:
        raise ConfigError(
            f"connection {conn_id!r} needs login (access key), password (secret key) and extra.endpoint_url "
            "(e.g. http://127.0.0.1:9000): bucket notifications are a MinIO API, not an AWS S3 one"
        )
    url = urlsplit(endpoint)

    class StoppablePool(urllib3.PoolManager):
        def urlopen(self, *args: Any, **kwargs: Any) -> Any:
            if stopping.is_set():
                raise _Stopped()
            return super().urlopen(*args, **kwargs)

    # a silent stream is reconnected after the read timeout (the pinned MinIO does not flush its keep-alives)
    pool = StoppablePool(timeout=urllib3.Timeout(connect=10, read=120), maxsize=2,
                         retries=urllib3.Retry(total=2, backoff_factor=0.5, status_forcelist=[500, 502, 503, 504]))
    return Minio(url.netloc, access_key=conn.login, secret_key=conn.password, secure=url.scheme == "https",
                 region=(conn.extra_dejson or {}).get("region_name"), http_client=pool)
