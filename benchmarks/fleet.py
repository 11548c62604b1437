"""Fleet scale figures: deploy + benchmark one blessed run on 1, 4 and 8 simulated devices, side by side.

    .venv/bin/python -m scripts.devstack up --no-airflow --devices 8
    .venv/bin/python benchmarks/fleet.py [--sizes 1,4,8] [--run RUN_ID] [--slots 8] [--runs 100]

Each device gets what a rollout's mapped wave task gives it: ``DeviceDeployOperator`` then
``DeviceBenchmarkOperator`` (the operators' own ``execute``), devices in parallel threads, at most ``--slots`` at
once (the ``edgeops_devices`` pool's size). Airflow's scheduling overhead is NOT included: this measures the
device side of a wave. The simulated devices are sshd processes on THIS machine, so they share its CPU cores:
the benchmark step (CPU-bound) cannot scale past the host's cores here, whereas real Pis each bring their own
CPU. The figures say so; they are host figures, not Pi figures.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "plugins")]
ENV_JSON = REPO / ".devstack" / "env.json"


def _setup() -> dict:
    if not ENV_JSON.exists():
        raise SystemExit(f"{ENV_JSON} missing: run `.venv/bin/python -m scripts.devstack up --no-airflow --devices 8`")
    env = json.loads(ENV_JSON.read_text())
    for conn_id, conn in env["connections"].items():
        os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(conn)
    s3 = env["s3"]
    os.environ.update({"EDGEOPS_S3_ENDPOINT": s3["endpoint"], "AWS_ACCESS_KEY_ID": s3["access_key"],
                       "AWS_SECRET_ACCESS_KEY": s3["secret_key"]})
    return env


def _one(device: str, run: dict, rollout_id: str, config: dict, variant: str) -> tuple[float, float]:
    """One device's wave work; the release id is fresh per wave (``<run>-<rollout>.<variant>``) so every wave
    really uploads, verifies, smoke-tests and switches instead of finding an identical release (reused)."""
    from edgeops_airflow.device_operators import DeviceBenchmarkOperator, DeviceDeployOperator

    from tasks.core.names import device_conn_id
    from tasks.device.runtime import RuntimeOptions
    from tasks.fleet.records import DeviceTask, release_id

    gate = run["gate"]
    target = DeviceTask(device=device, group="bench", wave=1, connection=device_conn_id(device),
                        runtime=RuntimeOptions(threads=1),
                        release=release_id(f"{run['run_id']}-{rollout_id}", variant), run_id=run["run_id"],
                        modes=tuple(gate["deploy"]),
                        current=variant, bench_modes=(variant,)).to_xcom()
    common = {"rollout_id": rollout_id, "config": config}
    t0 = time.perf_counter()
    deployed = DeviceDeployOperator(task_id=f"deploy_{device}", target=target, verdict=gate, **common).execute({})
    t1 = time.perf_counter()
    DeviceBenchmarkOperator(task_id=f"bench_{device}", deploy=deployed, **common).execute({})
    return t1 - t0, time.perf_counter() - t1


def wave(devices: list[str], run: dict, config: dict, variant: str, slots: int) -> dict:
    rollout_id = f"bench-fleet-{len(devices)}-{uuid.uuid4().hex[:6]}"
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=min(slots, len(devices))) as pool:
        parts = list(pool.map(lambda d: _one(d, run, rollout_id, config, variant), devices))
    return {"devices": len(devices), "wall_s": time.perf_counter() - start,
            "deploy_s": max(p[0] for p in parts), "bench_s": max(p[1] for p in parts)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="1,4,8")
    ap.add_argument("--run", default="", help="a blessed run id (default: the newest blessed run)")
    ap.add_argument("--slots", type=int, default=8, help="devices in flight at once (the pool's size)")
    ap.add_argument("--runs", type=int, default=100, help="timed invokes per device (bench.runs)")
    args = ap.parse_args()
    env = _setup()
    from tasks.core.config import PipelineConfig
    from tasks.core.storage import ArtifactStore
    from tasks.registry import runs

    store = ArtifactStore.from_env()
    run = runs.resolve(store, args.run) if args.run else runs.newest_blessed(store)
    cfg = PipelineConfig.from_dict(run["config"]).to_dict()
    cfg["bench"]["runs"] = args.runs
    names = [d["name"] for d in env["devices"] if d.get("kind") != "qemu"]
    sizes = [int(s) for s in args.sizes.split(",")]
    if max(sizes) > len(names):
        raise SystemExit(f"{max(sizes)} devices asked, {len(names)} up ({names}): "
                         f"`.venv/bin/python -m scripts.devstack up --no-airflow --devices {max(sizes)}`")
    variant = run["gate"]["current"]
    print(f"run {run['run_id']} variant {variant}; {os.cpu_count()} host cores; slots {args.slots}; "
          f"bench.runs {args.runs}; label host (sshd stand-ins on this machine, not Pis)")
    rows = [wave(names[:n], run, cfg, variant, args.slots) for n in sizes]
    base = rows[0]["wall_s"]
    print(f"{'devices':>8}{'wall s':>9}{'x of 1':>8}{'deploy s':>10}{'bench s':>9}")
    for r in rows:
        print(f"{r['devices']:>8}{r['wall_s']:>9.1f}{r['wall_s'] / base:>8.2f}{r['deploy_s']:>10.1f}"
              f"{r['bench_s']:>9.1f}")
    print("deploy s / bench s: the slowest device's deploy and benchmark in that wave. A device's first deploy also "
          "provisions its runtime venv (once per device): run twice for the steady state.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
