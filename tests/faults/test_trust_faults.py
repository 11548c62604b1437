"""Chain of trust on real sshd devices (issue 18): replayed, expired and foreign statements are refused; a file
damaged after deploy is reported by ``--check`` and repaired by a rollout of the same run, with ``current``
there all the time; a manifest replaced with the pipeline's credentials does not change what ships."""

from __future__ import annotations

import dataclasses
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from edgeops_airflow.device import DeviceClient
from edgeops_airflow.device_trust import ReleaseSigning
from edgeops_airflow.signing import release_trust

from tasks.core.exceptions import UntrustedReleaseError
from tasks.core.results import FileEntry
from tasks.device import signing
from tasks.device.records import listing_command, parse_listing
from tests.faults.conftest import device_state, sha_ok


@dataclasses.dataclass(frozen=True)
class Forged(ReleaseSigning):
    """Pins the real keys (as Airflow does) but hands the device another statement: the injected fault."""

    forge: Any = None

    def statement(self, release: str, variant: str, files: tuple[FileEntry, ...]) -> dict[str, Any]:
        return self.forge(release, variant, files)


def _rid(tag: str) -> str:
    return f"{tag}-{uuid.uuid4().hex[:8]}"


def _refused(client: DeviceClient, root: Path, payload: dict[str, Path], signer: ReleaseSigning) -> bool:
    """The deploy is refused, the device keeps its intact current, and the refused release never appears."""
    before = device_state(root)
    rid = _rid("refused")
    try:
        client.deploy(rid, payload, "int8", signing=signer)
    except UntrustedReleaseError:
        after = device_state(root)
        return after[:2] == before[:2] and after[1] and not (root / "releases" / rid).exists()
    return False


def test_replayed_expired_and_foreign_statements_are_refused(device_factory: Any, provisioned: Any,
                                                             payload: dict[str, Path], figures: Any) -> None:
    dev, name = device_factory()
    trust = release_trust()
    reps = 3
    replayed = expired = foreign = 0
    with DeviceClient(name) as client:
        client.deploy(_rid("base"), payload, "int8")
        for _ in range(reps):
            rid = _rid("old")
            old: dict[str, Any] = {}

            def keep_first(release: str, variant: str, files: tuple, old: dict = old) -> dict[str, Any]:
                old.setdefault("doc", trust.statement(release, release, variant, files, {}))
                return old["doc"]

            client.deploy(rid, payload, "int8", signing=Forged(trust, rid, forge=keep_first))  # accepted once
            client.deploy(_rid("new"), payload, "int8")  # a newer statement raises the highest sequence
            before = device_state(dev.root)
            try:
                client.deploy(rid, payload, "int8", signing=Forged(trust, rid, forge=keep_first))
            except UntrustedReleaseError as exc:
                replayed += "replay" in str(exc) and device_state(dev.root)[:2] == before[:2]
            expired += _refused(client, dev.root, payload, Forged(trust, "x", forge=lambda r, v, f: trust.statement(
                r, r, v, f, {}, now=time.time() - 7200, ttl_s=3600)))
            other = signing.Trust(signing.generate()[0])
            foreign += _refused(client, dev.root, payload, Forged(trust, "x", forge=lambda r, v, f, o=other:
                                                                  o.statement(r, r, v, f, {})))
    figures("replay of an older signed release: refused", reps, replayed, 0)
    figures("an expired statement: refused", reps, expired, 0)
    figures("a statement signed with another key: refused", reps, foreign, 0)
    assert (replayed, expired, foreign) == (reps, reps, reps)


def test_a_damaged_file_is_reported_and_repaired_without_a_moment_without_current(
        device_factory: Any, provisioned: Any, payload: dict[str, Path], figures: Any) -> None:
    dev, name = device_factory()
    reps, passed, gaps, reads = 3, 0, [0], [0]
    with DeviceClient(name) as client:
        rid = _rid("run")
        client.deploy(rid, payload, "int8")
        stop = threading.Event()

        def watch() -> None:  # `current` must always resolve to a release
            while not stop.is_set():
                reads[0] += 1
                gaps[0] += not os.path.isfile(dev.root / "current" / "model.tflite")
                time.sleep(0.002)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        for _ in range(reps):
            victim = dev.root / "releases" / rid / "fp32.tflite"  # not the current variant (int8)
            with open(victim, "r+b") as fh:
                fh.seek(16)
                fh.write(b"\0" * 64)
            seen = parse_listing(client.run(listing_command(client.root))[1])  # what `fleet status --check` reads
            reported = seen.damaged == ("fp32.tflite",) and seen.current == rid
            result = client.deploy(rid, payload, "int8")  # a rollout of the same run
            current, intact, staging = device_state(dev.root)
            passed += reported and not result.reused and current == rid and intact and not staging
        stop.set()
        watcher.join()
    figures("a file damaged on the device: --check reports it, same run repairs it", reps, passed, gaps[0],
            f"watcher read current {reads[0]} times during repairs; data lost = reads without current")
    assert passed == reps and gaps[0] == 0 and sha_ok(dev.root / "current")


def _publish_blessed(store: Any, run_id: str) -> Any:
    """A blessed run as the nightly leaves it: manifest.json, then the blessing announce signs (pinned ref)."""
    from tasks.core import keys
    from tasks.fleet import blessing
    from tasks.registry import runs
    from tests.tasks.manifests import manifest, variant, verdict

    good = manifest(run_id, {"int8": variant(0.95)}, verdict(True, ("int8",), "int8"), config={"profile": "tiny"})
    store.put_json(keys.manifest(run_id), good.to_dict(), name="manifest")
    announced = runs.pin(store, run_id)
    blessing.publish(store, release_trust(), blessing.Blessing.of(run_id, good, announced.ref))
    return announced


def _swap_manifest(store: Any, run_id: str, n: int) -> None:
    """The injected fault: a new manifest version naming other model bytes, written with pipeline credentials."""
    from tasks.core import keys
    from tests.tasks.manifests import manifest, variant, verdict

    bad = manifest(run_id, {"fp32": variant(0.9 + n / 100)}, verdict(True, ("fp32",), "fp32"),
                   config={"profile": "tiny"})
    store.put_json(keys.manifest(run_id), bad.to_dict(), name="manifest")


def test_a_replaced_manifest_version_never_ships(artifact_store: Any, figures: Any) -> None:
    """The pipeline's service account writes a new manifest version after announce: a rollout started by the
    asset event, and one started by hand naming the run, both ship the version the signed blessing names."""
    from types import SimpleNamespace

    from edgeops_airflow.rollout import _event, _pinned

    from tasks.core import names

    run_id, reps, by_event, by_hand = _rid("faults-pin"), 3, 0, 0
    announced = _publish_blessed(artifact_store, run_id)
    events = {f"Asset(name='{names.BLESSED_ASSET}')": [
        SimpleNamespace(extra={"run_id": run_id, "manifest": announced.ref.to_xcom()})]}
    for n in range(reps):
        _swap_manifest(artifact_store, run_id, n)
        shipped = _pinned(artifact_store, run_id, _event(events))
        by_event += shipped.manifest == announced.manifest and shipped.ref == announced.ref
        shipped = _pinned(artifact_store, run_id, ("", None))
        by_hand += shipped.manifest == announced.manifest and shipped.ref == announced.ref
    figures("manifest replaced by a new version (pipeline credentials), rollout by asset event: not shipped",
            reps, by_event, 0)
    figures("manifest replaced by a new version (pipeline credentials), rollout by hand: not shipped",
            reps, by_hand, 0)
    assert by_event == reps and by_hand == reps


def test_a_forged_or_missing_blessing_ships_nothing(artifact_store: Any, figures: Any) -> None:
    """With only the pipeline's credentials: a blessing signed with another key, a blessing copied from another
    run, and a run with no blessing at all are each refused before anything is planned."""
    from edgeops_airflow.rollout import _pinned

    from tasks.core import keys
    from tasks.core.exceptions import IntegrityError, StorageError
    from tasks.fleet import blessing

    donor = _rid("faults-donor")
    _publish_blessed(artifact_store, donor)
    cases = {}
    forged = _rid("faults-forged")
    announced = _publish_blessed(artifact_store, forged)
    other = signing.Trust(signing.generate()[0])
    artifact_store.put_json(keys.blessing(forged), blessing.sign(
        other, blessing.Blessing.of(forged, announced.manifest, announced.ref)), name="blessing")
    cases["a blessing signed with another key"] = (forged, IntegrityError, "does not verify")
    copied = _rid("faults-copied")
    _publish_blessed(artifact_store, copied)
    artifact_store.put_json(keys.blessing(copied), artifact_store.get_json(keys.blessing(donor)), name="blessing")
    cases["another run's blessing copied over"] = (copied, IntegrityError, "not of run")
    for case, (run_id, error, match) in cases.items():
        with pytest.raises(error, match=match):
            _pinned(artifact_store, run_id, ("", None))
        figures(f"{case}: rollout refused", 1, 1, 0)
    unsigned = _rid("faults-unsigned")  # a blessed-looking manifest, written by the pipeline, never announced
    _swap_manifest(artifact_store, unsigned, 0)
    with pytest.raises(StorageError, match="no signed blessing"):
        _pinned(artifact_store, unsigned, ("", None))
    figures("a blessed-looking manifest without a signed blessing: rollout refused", 1, 1, 0)


def test_newest_blessed_is_the_newest_signed_blessing_of_a_shipping_profile(artifact_store: Any) -> None:
    """A rollout with no run id ships the newest run whose blessing verifies and whose profile ships: a newer
    test-profile blessing and a newer forged one are passed over."""
    from edgeops_airflow.rollout import _pinned

    from tasks.core import keys
    from tasks.fleet import blessing
    from tasks.registry import runs
    from tests.tasks.manifests import manifest, variant, verdict

    def publish(run_id: str, ships: bool, signer: Any) -> Any:
        m = manifest(run_id, {"int8": variant(0.95)}, verdict(True, ("int8",), "int8"),
                     config={"profile": "demo" if ships else "tiny", "ships": ships})
        artifact_store.put_json(keys.manifest(run_id), m.to_dict(), name="manifest")
        pinned = runs.pin(artifact_store, run_id)
        artifact_store.put_json(keys.blessing(run_id), blessing.sign(signer, blessing.Blessing.of(
            run_id, m, pinned.ref)), name="blessing")
        time.sleep(1.1)  # LastModified has 1 s resolution: keep the order strict
        return pinned

    shipping = _rid("faults-newest-ships")
    expected = publish(shipping, True, release_trust())
    publish(_rid("faults-newest-tiny"), False, release_trust())
    publish(_rid("faults-newest-forged"), True, signing.Trust(signing.generate()[0]))
    chosen = _pinned(artifact_store, "", ("", None))
    assert chosen.manifest.run_id == shipping and chosen.ref == expected.ref
