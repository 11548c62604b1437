"""The Airflow side of a rollout: the blessed-model asset, the rollout form's Params, and planning.

Planning reads what only Airflow knows (the triggering asset event, device connections) and what is on the
devices (kept releases, for a rollback to a named run), then hands everything to ``tasks.fleet.rollout``.
Every bad input is one ``ConfigError`` here, before any device is touched.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import Asset, Param

from edgeops_airflow.device_transport import read_device
from edgeops_airflow.new_data import asset_uri
from tasks.core import keys, names
from tasks.core.config import load_config
from tasks.core.exceptions import ConfigError, IntegrityError, RecordError, StorageError
from tasks.core.keys import run_key
from tasks.core.modes import QUANT_MODES
from tasks.core.results import ArtifactRef
from tasks.fleet.records import FORWARD, ROLLBACK, RolloutPlan, RolloutStatus, split_release


def blessed_model_asset() -> Asset:
    """Emitted by the nightly run's ``announce`` task when its gate blessed a model (extra: run_id, variants)."""
    return Asset(name=names.BLESSED_ASSET, uri=asset_uri(names.ARTIFACTS_BUCKET, "runs"))


def rollout_params() -> dict[str, Param]:
    strings = {"type": "string", "pattern": r"^[A-Za-z0-9_-]+$"}
    return {
        "action": Param(FORWARD, type="string", enum=[FORWARD, ROLLBACK],
                        description="forward: ship a blessed run (canary first); rollback: switch back."),
        "run_id": Param(None, type=["null", "string"], description=(
            "forward: the nightly run to ship (empty: the asset event's run, else the newest blessed run); "
            "rollback: the run to go back to (empty: the release each device ran before the most recent "
            "rollout that changed it).")),
        "devices": Param([], type="array", items=strings, description="Devices (empty + no groups = the fleet)."),
        "groups": Param([], type="array", items=strings, description="Device groups (hardware classes)."),
        "variant": Param(None, type=["null", "string"], enum=[None, *QUANT_MODES],
                         description="forward: ship this variant everywhere (empty: best per group)."),
        "waves": Param([], type="array", items={"type": "integer", "minimum": 0},
                       description="Only these waves (empty: all; the lowest one is the canary)."),
        "max_failed": Param(0, type="integer", minimum=0, maximum=1000,
                            description="Later-wave devices that may fail or be offline (marked stale)."),
    }


def _event(events: Any) -> tuple[str, ArtifactRef | None]:
    """The run id and pinned manifest version of the newest blessed-model asset event that triggered this run
    (("", None) when triggered by hand)."""
    found: tuple[str, ArtifactRef | None] = ("", None)
    for key, evs in dict(events or {}).items():
        if names.BLESSED_ASSET in str(key):
            for ev in evs:
                extra = getattr(ev, "extra", None) or {}
                if extra.get("run_id"):
                    ref = extra.get("manifest")
                    found = (str(extra["run_id"]), ArtifactRef.from_xcom(ref) if ref else None)
    return found


def _pinned(store: Any, run_id: str, event: tuple[str, ArtifactRef | None]) -> Any:
    """The manifest to ship, pinned before anything is sent to the manifest version the gate's signed blessing
    names (``tasks.fleet.blessing``): of ``run_id``, else of the newest blessed run of a shipping profile. A newer
    manifest version, written with the pipeline's credentials, is never read; a blessing that does not verify
    against the signing connection's keys is refused. The asset event, when it names this run, must agree."""
    from edgeops_airflow.signing import release_trust
    from tasks.fleet import blessing

    accepted = release_trust().public_keys()
    pinned = blessing.pin(store, accepted, run_id) if run_id else blessing.pin_newest(store, accepted)
    event_run, ref = event
    if ref is not None and event_run == pinned.manifest.run_id and ref != pinned.ref:
        raise IntegrityError(f"the asset event announced {ref.uri} version {ref.version_id}, but the run's signed "
                             f"blessing names version {pinned.ref.version_id}: refusing to ship either")
    return pinned


def _store() -> Any:
    from edgeops_airflow.store import artifact_store

    return artifact_store(names.MINIO_CONN_ID, names.ARTIFACTS_BUCKET)


def _check_connections(devices: list[str], conn_of: dict[str, str]) -> None:
    from airflow.sdk import BaseHook

    missing = []
    for name in devices:
        try:
            BaseHook.get_connection(conn_of[name])
        except Exception:  # noqa: BLE001 - AirflowNotFoundException and friends: all mean "not usable"
            missing.append(f"{name} ({conn_of[name]})")
    if missing:
        raise ConfigError(f"devices {missing} have no Airflow connection: add it (type SSH, extra.host_key "
                          "pinned) or fix the fleet file")


def plan(params: dict[str, Any], airflow_run_id: str, clear_number: int, events: Any) -> RolloutPlan:
    """Params (+ the triggering asset event) -> a validated RolloutPlan; bad input raises ConfigError here."""
    from tasks.fleet.history import previous_release, state_history
    from tasks.fleet.inventory import load_inventory
    from tasks.fleet.rollout import RolloutRequest, plan_forward, plan_rollback, select_targets
    from tasks.registry import runs

    action = params.get("action") or FORWARD
    event = _event(events) if action == FORWARD else ("", None)
    request = RolloutRequest(
        action=action, run_id=str(params.get("run_id") or event[0]),
        devices=tuple(params.get("devices") or ()), groups=tuple(params.get("groups") or ()),
        variant=str(params.get("variant") or ""), waves=tuple(int(w) for w in params.get("waves") or ()),
        max_failed=int(params.get("max_failed") or 0))
    inventory = load_inventory()
    targets = select_targets(inventory, request)
    _check_connections([d.name for d in targets], {d.name: d.connection for d in targets})
    rollout_id, store = run_key(airflow_run_id, clear_number), _store()
    try:
        if action == FORWARD:
            pinned = _pinned(store, request.run_id, event)
            return plan_forward(inventory, request, rollout_id, pinned.manifest, pinned.ref)
        previous = {d.name: previous_release(state_history(store, d.name)) for d in targets}
        to_release = {}
        if request.run_id:
            run = runs.resolve(store, request.run_id).run_id
            for d in targets:
                kept = read_device(d.name, d.connection).kept  # pinned host key; releases newest first
                to_release[d.name] = next((r for r in kept if r == run or split_release(r)[0] == run), None)
        config = load_config(names.DEFAULT_PROFILE).to_dict()
        return plan_rollback(inventory, request, rollout_id, config, previous, to_release)
    except (StorageError, RecordError) as exc:  # the run named has no manifest, or not one this code can ship
        raise ConfigError(str(exc)) from None


# --- the canary gate and the record, as the DAG's tasks call them -------------------------------------------
def _records(cls: Any, values: Any) -> list[Any]:
    """Decode a mapped task's outputs; indexes that failed or were skipped pushed nothing."""
    return [cls.from_xcom(v) for v in list(values or []) if v]


def judge_canary(plan_raw: dict[str, Any], deploys: Any, benches: Any, traffic: Any = None) -> dict[str, Any]:
    """The canary gate (``tasks.fleet.rollout.canary_gate``); a rollback has no canary and passes. ``traffic``: the
    ``canary.traffic`` sensor's TrafficVerdicts (None when it failed: its groups' canaries fail the gate)."""
    import logging

    from tasks.core.results import BenchmarkResult, DeployResult
    from tasks.fleet.records import CanaryVerdict
    from tasks.fleet.rollout import canary_gate
    from tasks.fleet.traffic import TrafficVerdict

    plan_ = RolloutPlan.from_xcom(plan_raw)
    if plan_.action == ROLLBACK:
        return CanaryVerdict(True, (), {}).to_xcom()
    verdict = canary_gate(plan_, _records(DeployResult, deploys), _records(BenchmarkResult, benches),
                          _records(TrafficVerdict, traffic))
    log = logging.getLogger(__name__)
    log.info("%s", verdict.summary())
    for t in verdict.traffic:
        log.info("traffic canary %s (%s): %s: %s", t.device, t.group, t.status, "; ".join(t.reasons))
    for choice in verdict.choices.values():
        for reason in choice.reasons:
            log.info("group %s: %s", choice.group, reason)
    return verdict.to_xcom()


def finish(plan_raw: dict[str, Any], verdict_raw: dict[str, Any] | None, deploys: list[Any], benches: list[Any],
           switches: list[Any], airflow_run_id: str) -> dict[str, Any]:
    """Write ``rollouts/<id>/record.json`` (last) and fail the run, after writing, unless it succeeded."""
    import datetime as dt
    import logging

    from airflow.sdk.exceptions import AirflowFailException

    from tasks.core.results import BenchmarkResult, DeployResult
    from tasks.fleet.records import CanaryVerdict, SwitchResult
    from tasks.fleet.report import write_rollout_report
    from tasks.fleet.rollout import build_record

    plan_ = RolloutPlan.from_xcom(plan_raw)
    verdict = CanaryVerdict.from_xcom(verdict_raw) if verdict_raw else None
    record = build_record(plan_, verdict,
                          [d for group in deploys for d in _records(DeployResult, group)],
                          [s for group in switches for s in _records(SwitchResult, group)],
                          [b for group in benches for b in _records(BenchmarkResult, group)],
                          airflow_run_id, dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
    store = _store()
    page = write_rollout_report(store, record, plan_.budgets)
    written = store.put_json(keys.rollout_record(plan_.rollout_id), record.to_xcom())  # last
    logging.getLogger(__name__).info("%s -> %s (report %s)", record.summary(), store.uri(written.key),
                                     store.uri(page.key))
    if record.status != RolloutStatus.SUCCEEDED:
        raise AirflowFailException(f"{record.summary()}: {'; '.join(record.reasons)}")
    return record.to_xcom()


def _sign_blessing(run_id: str, ref: ArtifactRef) -> None:
    """Sign the blessing of the manifest version publish wrote (read back pinned and checked against its sha256),
    for every blessed run, shipping or not: a rollout that names the run ships exactly that version."""
    import logging

    from edgeops_airflow.signing import release_trust
    from tasks.fleet import blessing
    from tasks.registry import runs

    store = _store()
    pinned = runs.load_pinned(store, ref)
    key = blessing.publish(store, release_trust(), blessing.Blessing.of(run_id, pinned.manifest, ref))
    logging.getLogger(__name__).info("signed the blessing of %s version %s -> %s", ref.uri, ref.version_id,
                                     store.uri(key))


def announce_blessed(run_id: str, config: dict[str, Any], verdict_raw: dict[str, Any], published_raw: dict[str, Any],
                     context: Any) -> None:
    """The nightly run's last task: put the run id and blessed variants on the asset event, or skip (no event)
    when nothing was blessed or the run's profile may not ship, so such a run never starts a rollout."""
    from airflow.sdk.exceptions import AirflowSkipException

    from tasks.core.config import PipelineConfig
    from tasks.core.results import PublishResult
    from tasks.core.verdict import GateVerdict

    verdict, published = GateVerdict.from_xcom(verdict_raw), PublishResult.from_xcom(published_raw)
    if not verdict.blessed:
        raise AirflowSkipException(f"{verdict.outcome or 'not blessed'}, nothing to roll out: "
                                   f"{'; '.join(verdict.reasons)}")
    _sign_blessing(run_id, published.manifest)
    profile = PipelineConfig.from_dict(config)
    if not profile.ships:
        raise AirflowSkipException(f"blessed, but profile {profile.profile!r} may not ship (ships=false): no "
                                   "rollout starts; use a shipping profile (e.g. demo) for models meant for devices")
    context["outlet_events"][blessed_model_asset()].extra = {
        "run_id": run_id, "variants": list(verdict.deploy), "current": verdict.current,
        "manifest": published.manifest.to_xcom()}
