"""Collection figures: time to collect N small edgeops-serve samples (default 10,000) from one device into MinIO.

    .venv/bin/python benchmarks/collect.py [--samples 10000] [--workers 8]

Self-contained: an own sshd device and an own MinIO on free loopback ports (tests/faults/procs.py: the cached
binaries and client key of the dev stack, or of the tests' stack when there is no dev stack; no running stack
is touched), both stopped at the end. The samples are
written as edgeops-serve writes them (8x8x3 uint8 frames, ~1 KB .npz each; tests/collect_helpers.py). Then one
``collect_device`` over the pinned-key SSH transport: list, SFTP download, sha256 check, HEAD, PUT, HEAD,
delete on the device in batches. Host figures: the device is a process on this machine, sharing its cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "plugins")]
if "EDGEOPS_DEVSTACK_DIR" not in os.environ and not (REPO / ".devstack" / "keys").is_dir():  # the tests' stack
    os.environ.update(EDGEOPS_DEVSTACK_DIR=str(REPO / ".devstack-test"),
                      EDGEOPS_STACK_FILE=str(REPO / "config" / "stack.test.json"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=8, help="parallel uploads to MinIO")
    args = parser.parse_args()

    from tasks.core.storage import ArtifactStore, make_client
    from tasks.device.transport import EnvTransport
    from tasks.fleet.collect import collect_device
    from tests.collect_helpers import remaining, write_samples, write_telemetry
    from tests.faults.procs import Minio, Sshd

    work = Path(tempfile.mkdtemp(prefix="edgeops-bench-collect-"))
    device, minio = Sshd("benchcollect", work / "sshd", work / "root", work / "runtimes"), Minio(work / "minio")
    try:
        device.start()
        minio.start()
        os.environ["AIRFLOW_CONN_EDGEOPS_DEVICE_BENCHCOLLECT"] = json.dumps(device.connection())
        client = make_client(minio.endpoint, minio.user, minio.secret)
        for bucket in ("artifacts", "datasets"):
            client.create_bucket(Bucket=bucket)
            client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        started = time.monotonic()
        written = write_samples(device.root, "run.int8", args.samples, fsync=False)
        write_telemetry(device.root, "run.int8", "bench", final=True)
        size = sum(len(b) for b in written.values())
        print(f"wrote {len(written)} samples ({size / 1e6:.1f} MB) in {time.monotonic() - started:.1f}s", flush=True)
        load = os.getloadavg()[0]
        with EnvTransport("benchcollect") as transport:
            record = collect_device(transport, ArtifactStore(client, "artifacts"), "s3://datasets/bench",
                                    workers=args.workers)
        left = remaining(device.root)
        print(json.dumps({"label": "host", "machine": platform.machine(), "cpus": os.cpu_count(),
                          "load_avg_at_start": round(load, 2), "samples": args.samples, "bytes": record.bytes,
                          "files": record.files, "failed": record.failed, "seconds": record.seconds,
                          "files_per_s": round(record.files / record.seconds, 1), "left_on_device": len(left),
                          "workers": args.workers}, indent=2))
    finally:
        device.stop()
        minio.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
