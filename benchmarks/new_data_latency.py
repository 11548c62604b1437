"""How long after a burst of uploads the new-data watcher fires, and how many events a burst makes.

    eval $(.venv/bin/python -m scripts.devstack env --shell)
    .venv/bin/python benchmarks/new_data_latency.py [--bursts 1,10,50] [--quiet 3] [--rescan 5]

Runs ``MinioNewObjectsTrigger.run()`` (the code the triggerer runs) against the dev stack's MinIO with the
``edgeops_minio`` connection, uploads each burst under a fresh prefix of the datasets bucket, and prints, per
burst: objects counted, events, and seconds from the LAST upload to the event (ideally ~quiet). The uploaded
objects are deleted afterwards with the stack's root user (the pipeline's account may not delete).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "plugins")]


async def one_burst(trigger, upload, n: int, quiet: float) -> tuple[int, int, float]:
    events: list[tuple[float, int]] = []

    async def consume() -> None:
        async for event in trigger.run():
            events.append((time.monotonic(), event.payload["objects"]))

    task = asyncio.create_task(consume())
    await asyncio.sleep(1.5)  # connect and list the baseline
    await asyncio.to_thread(upload, n)
    last_upload = time.monotonic()
    deadline = last_upload + 4 * quiet + 30
    while not events and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    await asyncio.sleep(quiet + 2)  # a second event would show up here
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    if not events:
        return 0, 0, float("nan")
    return events[0][1], len(events), events[0][0] - last_upload


def main() -> int:
    from edgeops_airflow.triggers import MinioNewObjectsTrigger

    from tasks.core.storage import make_client

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bursts", default="1,10,50", help="burst sizes, comma-separated")
    parser.add_argument("--quiet", type=float, default=3.0)
    parser.add_argument("--rescan", type=float, default=5.0)
    args = parser.parse_args()

    env = json.loads((REPO / ".devstack" / "env.json").read_text())
    bucket, root = env["s3"]["datasets_bucket"], env["s3_admin"]
    admin = make_client(env["s3"]["endpoint"], root["access_key"], root["secret_key"])
    print(f"new-data watcher on {env['s3']['endpoint']}: quiet {args.quiet:g} s, rescan {args.rescan:g} s")
    print(f"{'burst':>6} {'counted':>8} {'events':>7} {'last upload -> event':>21}")
    for n in [int(x) for x in args.bursts.split(",")]:
        prefix = f"benchmark-new-data-{uuid.uuid4().hex[:8]}/"

        def upload(count: int, prefix: str = prefix) -> None:
            for i in range(count):
                admin.put_object(Bucket=bucket, Key=f"{prefix}c{i % 3}/{i}.png", Body=uuid.uuid4().bytes)

        trigger = MinioNewObjectsTrigger(bucket, prefix, quiet_seconds=args.quiet, max_wait_seconds=600,
                                         rescan_seconds=args.rescan)
        try:
            counted, events, latency = asyncio.run(one_burst(trigger, upload, n, args.quiet))
        finally:
            for obj in admin.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", []):
                admin.delete_object(Bucket=bucket, Key=obj["Key"])
        print(f"{n:>6} {counted:>8} {events:>7} {latency:>19.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
