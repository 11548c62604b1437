"""`make demo`: start the stack, seed the digits dataset, run the nightly DAG ONCE through Airflow, follow the
rollout its blessed model starts (canary, then the rest), and summarise both plus the fleet status; then each
device serves a few requests and a collection shows their telemetry (scripts/demo_serve.py).

It drives Airflow the way a user would: logged in (the admin's password the stack generated at its first start)
through Airflow's REST API (tasks/fleet/airflow_api.py, the client `edgeops rollout` uses), then leaves the
stack up.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from scripts.demo_serve import serve_and_collect  # noqa: E402
from scripts.devstack import airflow as af  # noqa: E402
from scripts.devstack.common import STATE, load_stack  # noqa: E402
from scripts.devstack.devices import FLEET_JSON  # noqa: E402
from tasks.core.manifest import RunManifest  # noqa: E402
from tasks.core.names import ENV_FLEET  # noqa: E402
from tasks.fleet.airflow_api import AirflowApi  # noqa: E402

DAG_ID = "edgeops_nightly"
ROLLOUT_DAG_ID = "edgeops_rollout"
TIMEOUT_S = int(os.environ.get("EDGEOPS_DEMO_TIMEOUT", "1500"))


def sh(*args: str, env: dict[str, str], check: bool = True) -> str:
    out = subprocess.run(list(args), env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    if check and out.returncode != 0:
        raise SystemExit(f"demo: `{' '.join(args[:4])} ...` failed:\n{out.stderr[-2000:]}")
    return out.stdout


def wait_for_dag(api: AirflowApi) -> None:
    deadline = time.time() + 180
    while time.time() < deadline:
        errors = api.import_errors()
        if errors:
            raise SystemExit(f"demo: the DAG folder has import errors:\n{errors}")
        if {DAG_ID, ROLLOUT_DAG_ID} <= api.dag_ids():
            return
        time.sleep(5)
    raise SystemExit(f"demo: {DAG_ID}/{ROLLOUT_DAG_ID} not parsed after 180 s; see .devstack/logs/dag-processor.log")


def _index(state: dict) -> str:
    return "" if state.get("map_index") in (None, "", -1, "-1") else f"[{state['map_index']}]"


def rollout_started_after(api: AirflowApi, known: set[str]) -> str:
    """The rollout run the nightly run's asset event started (a run id not in ``known``)."""
    deadline = time.time() + 180
    while time.time() < deadline:
        new = [r["dag_run_id"] for r in api.runs(ROLLOUT_DAG_ID) if r["dag_run_id"] not in known]
        if new:
            return str(new[0])
        time.sleep(5)
    raise SystemExit(f"demo: no {ROLLOUT_DAG_ID} run started within 180 s of the blessed-model asset event")


def wait_for_run(api: AirflowApi, run_id: str, dag_id: str = DAG_ID) -> str:
    start, last = time.time(), ""
    while time.time() - start < TIMEOUT_S:
        states = api.task_instances(dag_id, run_id)
        summary = ", ".join(f"{s['task_id']}{_index(s)}={s['state']}" for s in states)
        if summary != last:
            print(f"[{time.time() - start:5.0f}s] {summary}", flush=True)
            last = summary
        state = str(api.dag_run(dag_id, run_id).get("state"))
        if state in ("success", "failed"):
            return state
        time.sleep(10)
    raise SystemExit(f"demo: run {run_id} still running after {TIMEOUT_S}s; it continues in Airflow")


def run_header(manifest: RunManifest) -> str:
    return (f"\nrun {manifest.run_id}  code {manifest.code_version[:12]}  profile {manifest.profile}"
            f"  test images {manifest.evaluation.test_examples}")


def _variants(manifest: RunManifest) -> None:
    gate = manifest.verdict
    level = f"{1 - gate.significance:.0%}"
    print(f"{'variant':<9}{'accuracy':>9}{'drop pp':>9}{'bound pp':>9}{'size KB':>10}{'gzip KB':>9}"
          f"{'host p50 ms':>13}{'agree':>7}  gate ({level} bound vs {gate.max_accuracy_drop_pp} pp margin)")
    for mode, v in sorted(manifest.variants.items(), key=lambda kv: kv[1].size_bytes):
        verdict = v.gate
        mark = "current" if mode == gate.current else ("ships" if mode in gate.deploy else "-")
        bound = verdict.drop_upper_pp if verdict else None
        finding = (verdict.finding or ("pass" if verdict.passed else "fail")) if verdict else "-"
        print(f"{mode:<9}{v.accuracy:>9.4f}{verdict.drop_pp if verdict else 0:>9.2f}"
              f"{'' if bound is None else f'{bound:+.2f}':>9}{v.size_bytes / 1024:>10.1f}"
              f"{(v.gzip_bytes or 0) / 1024:>9.1f}{v.latency_p50_ms or 0:>13.3f}{v.agreement or 0:>7.3f}  "
              f"{finding} {mark}")
    outcome = (gate.outcome or ("blessed" if gate.blessed else "not_blessed")).upper().replace("_", " ")
    print(f"\n{outcome}" + ("" if gate.blessed else " (nothing deployed; devices keep their release)")
          + "".join(f"\n  - {r}" for r in gate.reasons))


def rollout_summary(rollout_key: str) -> None:
    """The rollout record: per-group choice with its reasons, then every device's outcome and figures."""
    from tasks.core import keys
    from tasks.core.storage import ArtifactStore
    from tasks.fleet.records import RolloutRecord

    record = RolloutRecord.from_xcom(ArtifactStore.from_env().get_json(keys.rollout_record(rollout_key)))
    print(f"\n{record.summary()}")
    for reason in record.reasons:
        print(f"  - {reason}")
    for group, choice in sorted(record.choices.items()):
        print(f"group {group}: runs {choice.variant or 'nothing'}" + "".join(f"\n  - {r}" for r in choice.reasons))
    print(f"\n{'device':<9}{'wave':>5} {'status':<12}{'variant':<9}{'label':<9}{'p50 ms':>8}{'p95 ms':>8}{'acc':>7}"
          f"{'RSS MB':>8}")
    for d in record.devices:
        b = d.bench.get(d.variant or "")
        figures = (f"{b.latency_ms['p50']:>8.3f}{b.latency_ms['p95']:>8.3f}{b.accuracy:>7.3f}{b.peak_rss_mb:>8.1f}"
                   if b else "")
        print(f"{d.device:<9}{d.wave:>5} {d.status:<12}{d.variant or '-':<9}{d.label or '-':<9}{figures}")
    print("(timings labelled 'host' come from x86 sshd stand-ins, 'emulated' from qemu: not Raspberry Pi figures)")


def fleet_status() -> None:
    """`edgeops fleet status` for the running devices' inventory (the one Airflow's rollout used)."""
    env = {**os.environ, **({ENV_FLEET: str(FLEET_JSON)} if FLEET_JSON.exists() else {})}
    out = subprocess.run([sys.executable, "-m", "tasks.cli", "fleet", "status"], cwd=REPO, capture_output=True,
                         text=True, timeout=120, env=env)
    print("\n$ edgeops fleet status\n" + (out.stdout or out.stderr).rstrip())


def summary(run_key: str, cfg: dict) -> None:
    from tasks.core import keys
    from tasks.core.storage import ArtifactStore
    from tasks.registry import runs

    store = ArtifactStore.from_env()
    manifest = runs.resolve(store, run_key)
    print(run_header(manifest))
    _variants(manifest)
    m = cfg["minio"]
    print(f"\nAirflow UI     {af.url(cfg)}/dags/{DAG_ID}")
    print(f"               login {af.ADMIN}; its password: {af.PASSWORD_CMD}")
    console = f"http://{m['host']}:{m['console_port']}/browser/{m['artifacts_bucket']}/runs%2F{manifest.run_id}%2F"
    print(f"MinIO console  {console}  (root login {m['access_key']}; its password: cat {STATE / 'minio-root.secret'})")
    print(f"Report         {store.presigned_url(keys.report(manifest.run_id))}")
    print("               (a presigned link, valid 7 days: open it in a browser)")
    print("Verify         eval $(.venv/bin/python -m scripts.devstack env --shell)")
    print("               .venv/bin/edgeops runs verify latest")
    print("Stop           make down")


def main() -> int:
    cfg = load_stack()
    subprocess.run([sys.executable, "-m", "scripts.devstack", "up"], cwd=REPO, check=True)
    shell_env = json.loads(sh(sys.executable, "-m", "scripts.devstack", "env", env=dict(os.environ)))
    s3 = shell_env["s3"]
    os.environ.update({"EDGEOPS_S3_ENDPOINT": s3["endpoint"], "AWS_ACCESS_KEY_ID": s3["access_key"],
                       "AWS_SECRET_ACCESS_KEY": s3["secret_key"], "EDGEOPS_ARTIFACTS_BUCKET": s3["artifacts_bucket"]})
    sh(sys.executable, "-m", "tasks.cli", "seed-digits", "--uri", f"s3://{s3['datasets_bucket']}/digits",
       env=dict(os.environ))
    api = AirflowApi(af.url(cfg), af.ADMIN, af.password())  # logins are on: the stack's generated password
    wait_for_dag(api)
    api.unpause(DAG_ID)
    api.unpause(ROLLOUT_DAG_ID)
    known = {str(r["dag_run_id"]) for r in api.runs(ROLLOUT_DAG_ID)}
    run_id = "demo__" + dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    api.trigger(DAG_ID, {"profile": "demo"}, run_id)
    print(f"demo: triggered {DAG_ID} run {run_id}; follow it at {af.url(cfg)}/dags/{DAG_ID}", flush=True)
    state = wait_for_run(api, run_id)
    if state != "success":
        print(f"demo: run {run_id} {state}; see the Airflow UI or .devstack/airflow/logs", file=sys.stderr)
        return 1
    from tasks.core.keys import run_key

    summary(run_key(run_id), cfg)
    announce = {t["task_id"]: t["state"] for t in api.task_instances(DAG_ID, run_id)}.get("announce")
    if announce != "success":  # not blessed or inconclusive (e.g. against the model the fleet already runs)
        print(f"\ndemo: announce {announce}: the gate did not bless this run, so no rollout starts and every device "
              "keeps its release (the gate's reasons are above; that is the platform refusing an unproven model)",
              flush=True)
        fleet_status()
        return 0
    rollout_id = rollout_started_after(api, known)
    print(f"\ndemo: the blessed model started {ROLLOUT_DAG_ID} run {rollout_id}", flush=True)
    rollout_state = wait_for_run(api, rollout_id, ROLLOUT_DAG_ID)
    rollout_summary(run_key(rollout_id))
    fleet_status()
    served = serve_and_collect(shell_env["connections"], FLEET_JSON)
    print(f"\nRollout        {af.url(cfg)}/dags/{ROLLOUT_DAG_ID}")
    print(f"Fleet page     {af.url(cfg)}/plugin/edgeops-fleet  (in the Airflow UI: Browse > Fleet)")
    return 0 if rollout_state == "success" and served else 1


if __name__ == "__main__":
    sys.exit(main())
