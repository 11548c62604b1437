"""What rollouts left in the store, read back: the newest rollout records and each device's state record.

Nothing here connects to a device. ``rollouts/<id>/record.json`` is written last by a rollout run (a rollout
without it did not finish); ``devices/<name>/state.json`` at every switch of a device's ``current``.
"""

from __future__ import annotations

import itertools
import logging
import statistics
from collections.abc import Iterable, Iterator
from typing import Any

from tasks.core import keys
from tasks.core.exceptions import RecordError, StorageError
from tasks.core.storage import ArtifactStore
from tasks.fleet.records import FORWARD, DeviceState, Outcome, RolloutRecord, split_release

log = logging.getLogger(__name__)
RECENT_ROLLOUTS = 50  # how many records status and the history trend read, newest first


def record_objects(store: ArtifactStore) -> list[dict[str, Any]]:
    """Every ``rollouts/<id>/record.json`` object, newest first (LastModified, then key for a stable order)."""
    found = [o for o in store.list(keys.ROLLOUTS_PREFIX) if keys.rollout_of_record(o["Key"])]
    return sorted(found, key=lambda o: (o["LastModified"], o["Key"]), reverse=True)


def recent_records(store: ArtifactStore, limit: int = RECENT_ROLLOUTS) -> list[RolloutRecord]:
    """The newest ``limit`` readable rollout records, newest first; unreadable ones are logged and skipped."""
    out: list[RolloutRecord] = []
    for obj in record_objects(store)[: max(0, limit) * 2]:  # room for a few unreadable ones
        if len(out) == limit:
            break
        try:
            out.append(RolloutRecord.from_xcom(store.get_json(obj["Key"])))
        except (StorageError, RecordError, ValueError) as exc:
            log.warning("skipping %s: %s", obj["Key"], exc)
    return out


def read_state(store: ArtifactStore, device: str) -> DeviceState | None:
    """The device's state record, None when no rollout ever switched it (or the record is unreadable)."""
    key = keys.device_state(device)
    if not store.exists(key):
        return None
    try:
        return DeviceState.from_xcom(store.get_json(key))
    except (RecordError, ValueError) as exc:
        log.warning("unreadable %s: %s", store.uri(key), exc)
        return None


def state_history(store: ArtifactStore, device: str) -> Iterator[DeviceState]:
    """The device's state records, newest first: the versions of ``devices/<name>/state.json``, read lazily
    (a caller that stops early reads only the newest few). Unreadable versions are logged and skipped."""
    key = keys.device_state(device)
    for version in store.versions(key):
        try:
            yield DeviceState.from_xcom(store.get_json(key, version_id=version))
        except (StorageError, RecordError, ValueError) as exc:
            log.warning("skipping version %s of %s: %s", version, store.uri(key), exc)


def fleet_runs(store: ArtifactStore) -> list[str]:
    """The run ids the fleet's devices run now (``devices/*/state.json``), most devices first: what the
    evaluate step offers the champion search, so the challenger meets the model the fleet actually serves."""
    counts: dict[str, int] = {}
    for obj in store.list(keys.DEVICES_PREFIX):
        name = obj["Key"][len(keys.DEVICES_PREFIX):].split("/")[0]
        if obj["Key"] != keys.device_state(name):
            continue
        state = read_state(store, name)
        run, _variant = split_release(state.release if state else None)
        if run:
            counts[run] = counts.get(run, 0) + 1
    return sorted(counts, key=lambda r: (-counts[r], r))


def previous_release(history: Iterable[DeviceState]) -> str | None:
    """The release a rollback without a named run puts the device on: the one it ran before the most recent
    rollout that changed it.

    ``history`` is the device's state records, newest first (``state_history``). The consecutive records of
    one rollout are one step, from the ``previous`` of its oldest record to the ``release`` of its newest: a
    canary deploy then its promotion to another variant of the run is one step; a canary deploy then its
    switch-back after a failed gate starts and ends on the same release, changed nothing, and is passed over
    (as is a re-deploy of the release the device already ran). The newest step that changed the device
    decides. A rollback is a rollout too, so a second rollback without a run undoes the first. None when no
    recorded rollout changed the device, or it ran nothing before the one that did."""
    for _, records in itertools.groupby(history, key=lambda s: s.rollout_id):
        step = list(records)
        start, end = step[-1].previous, step[0].release
        if start != end:
            return start
    return None


def device_trend(records: Iterable[RolloutRecord]) -> dict[str, tuple[float | None, str | None]]:
    """run id -> (median p50 ms of the variant each switched device runs, labels such as "host/native").

    Per run, the newest forward rollout with any benchmarked switched device decides (``records`` newest
    first, as ``recent_records`` returns them). This is what ``report_history.history_rows`` takes."""
    out: dict[str, tuple[float | None, str | None]] = {}
    for record in records:
        if record.action != FORWARD or not record.run_id or record.run_id in out:
            continue
        p50s, labels = [], set()
        for d in record.devices:
            bench = d.bench.get(d.variant or "") if d.status == Outcome.SWITCHED else None
            if bench is not None and "p50" in bench.latency_ms:
                p50s.append(float(bench.latency_ms["p50"]))
                labels.add(d.label or "unknown")
        if p50s:
            out[record.run_id] = (statistics.median(p50s), "/".join(sorted(labels)))
    return out
