"""`make demo`: start the stack, seed the digits dataset, run the nightly DAG ONCE through Airflow, summarise.

It drives Airflow the way a user would (its CLI against the running scheduler), then leaves the stack up.
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

from scripts.devstack import airflow as af  # noqa: E402
from scripts.devstack.common import load_stack  # noqa: E402

DAG_ID = "edgeops_nightly"
TIMEOUT_S = int(os.environ.get("EDGEOPS_DEMO_TIMEOUT", "1500"))


def sh(*args: str, env: dict[str, str], check: bool = True) -> str:
    out = subprocess.run(list(args), env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    if check and out.returncode != 0:
        raise SystemExit(f"demo: `{' '.join(args[:4])} ...` failed:\n{out.stderr[-2000:]}")
    return out.stdout


def airflow(env: dict[str, str], *args: str, check: bool = True) -> str:
    return sh(af.airflow_bin(), *args, env=env, check=check)


def airflow_json(env: dict[str, str], *args: str) -> list:
    """Airflow CLI ``-o json`` output; the CLI may print log/warning lines before the JSON."""
    out = airflow(env, *args, "-o", "json")
    for i, line in enumerate(out.splitlines()):
        if line.startswith(("[", "{")):
            return json.loads("\n".join(out.splitlines()[i:]))
    return []


def wait_for_dag(env: dict[str, str]) -> None:
    deadline = time.time() + 180
    while time.time() < deadline:
        errors = airflow_json(env, "dags", "list-import-errors")
        if errors:
            raise SystemExit(f"demo: the DAG folder has import errors:\n{errors}")
        if DAG_ID in airflow(env, "dags", "list", "-o", "plain", check=False):
            return
        time.sleep(5)
    raise SystemExit(f"demo: {DAG_ID} not parsed after 180 s; see .devstack/logs/dag-processor.log")


def _index(state: dict) -> str:
    return "" if state.get("map_index") in (None, "", -1, "-1") else f"[{state['map_index']}]"


def wait_for_run(env: dict[str, str], run_id: str) -> str:
    start, last = time.time(), ""
    while time.time() - start < TIMEOUT_S:
        states = airflow_json(env, "tasks", "states-for-dag-run", DAG_ID, run_id)
        summary = ", ".join(f"{s['task_id']}{_index(s)}={s['state']}" for s in states)
        if summary != last:
            print(f"[{time.time() - start:5.0f}s] {summary}", flush=True)
            last = summary
        runs = airflow_json(env, "dags", "list-runs", DAG_ID)
        state = next((r["state"] for r in runs if r["run_id"] == run_id), "queued")
        if state in ("success", "failed"):
            return state
        time.sleep(10)
    raise SystemExit(f"demo: run {run_id} still running after {TIMEOUT_S}s; it continues in Airflow")


def _variants(manifest: dict) -> None:
    gate = manifest["gate"]
    print(f"{'variant':<9}{'accuracy':>9}{'drop pp':>9}{'p':>8}{'size KB':>10}{'gzip KB':>9}{'host p50 ms':>13}"
          f"{'agree':>7}  gate")
    for mode, v in sorted(manifest["variants"].items(), key=lambda kv: kv[1]["size_bytes"]):
        verdict = v.get("gate") or {}
        mark = "current" if mode == gate["current"] else ("ship" if mode in gate["deploy"] else "-")
        p = verdict.get("p_value")
        print(f"{mode:<9}{v['accuracy']:>9.4f}{verdict.get('drop_pp', 0):>9.2f}{'' if p is None else f'{p:.3f}':>8}"
              f"{v['size_bytes'] / 1024:>10.1f}{v['gzip_bytes'] / 1024:>9.1f}{v['latency_p50_ms']:>13.3f}"
              f"{v['agreement'] or 0:>7.3f}  {'pass' if verdict.get('passed') else 'FAIL'} {mark}")
    print(("\nBLESSED" if gate["blessed"] else "\nNOT BLESSED (nothing deployed; devices keep their release)")
          + "".join(f"\n  - {r}" for r in gate["reasons"]))


def _devices(manifest: dict) -> None:
    if not manifest["devices"]:
        return
    print(f"\n{'device':<9}{'arch':<9}{'label':<9}{'variant':<9}{'p50 ms':>8}{'p90 ms':>8}{'p99 ms':>8}{'acc':>7}"
          f"{'RSS MB':>8}")
    for d in manifest["devices"]:
        b = d["models"][d["current_variant"]]
        lat = b["latency_ms"]
        print(f"{d['device']:<9}{d['arch']:<9}{d['label']:<9}{d['current_variant']:<9}{lat['p50']:>8.3f}"
              f"{lat['p90']:>8.3f}{lat['p99']:>8.3f}{b['accuracy']:>7.3f}{b['peak_rss_mb']:>8.1f}")
    print("(timings labelled 'host' come from x86 sshd stand-ins, 'emulated' from qemu: not Raspberry Pi figures)")


def summary(run_key: str, cfg: dict) -> None:
    from tasks import keys, runs
    from tasks.storage import ArtifactStore

    store = ArtifactStore.from_env()
    manifest = runs.resolve(store, run_key)
    print(f"\nrun {manifest['run_id']}  code {manifest['code_version'][:12]}  profile {manifest['config']['profile']}"
          f"  test images {manifest['evaluation']['test_examples']}")
    _variants(manifest)
    _devices(manifest)
    m = cfg["minio"]
    print(f"\nAirflow UI     {af.url(cfg)}/dags/{DAG_ID}")
    console = f"http://{m['host']}:{m['console_port']}/browser/{m['artifacts_bucket']}/runs%2F{manifest['run_id']}%2F"
    print(f"MinIO console  {console}  (login {m['access_key']} / {m['secret_key']})")
    print(f"Report         {store.presigned_url(keys.report(manifest['run_id']))}")
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
    env = {**os.environ, **af.settings(cfg)}
    wait_for_dag(env)
    airflow(env, "dags", "unpause", DAG_ID)
    run_id = "demo__" + dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    airflow(env, "dags", "trigger", DAG_ID, "--run-id", run_id, "--conf", json.dumps({"profile": "demo"}))
    print(f"demo: triggered {DAG_ID} run {run_id}; follow it at {af.url(cfg)}/dags/{DAG_ID}", flush=True)
    state = wait_for_run(env, run_id)
    if state != "success":
        print(f"demo: run {run_id} {state}; see the Airflow UI or .devstack/airflow/logs", file=sys.stderr)
        return 1
    from tasks.config import run_key

    summary(run_key(run_id), cfg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
