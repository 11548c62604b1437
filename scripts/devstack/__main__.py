"""CLI: .venv/bin/python -m scripts.devstack up [--no-airflow] [--with-containers] [--devices N] | down | status |
env [--shell] | fleet [--waves K] | password"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import shlex
import sys
import time
from pathlib import Path

if not __package__:  # also runnable as `python scripts/devstack ...`
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from scripts.devstack import airflow, containers, devices, minio  # noqa: E402
from scripts.devstack.common import (  # noqa: E402
    ENV_JSON,
    REPO,
    STATE,
    DevstackError,
    load_stack,
    with_minio_root,
    write_private,
)
from tasks.core import names

BASE_FLEET = REPO / "config" / "fleet.json"

USAGE_UP = ".venv/bin/python -m scripts.devstack up"
WITH_CONTAINERS_ENV = "EDGEOPS_WITH_CONTAINERS"


def live_devices(cfg: dict) -> list[tuple[dict, dict, dict]]:
    """(config entry, description, connection) of every device env.json lists: all process devices, and the
    container devices that are up right now."""
    out = []
    for dev in cfg.get("devices", []):
        if devices.is_container(dev):
            if containers.is_up(dev):
                out.append((dev, containers.describe(dev), containers.connection(dev)))
        else:
            out.append((dev, devices.describe(dev), devices.connection(dev)))
    return out


SIGNING_KEY = STATE / "signing.json"  # the release signing key (0600): only Airflow's connection carries it


def signing_connection() -> dict:
    """The release signer's Airflow connection, its key generated at the first start into .devstack/ (0600).
    Rotate with `.venv/bin/python -m scripts.devstack rotate-key [--finish]` (docs/devices.md)."""
    from tasks.device.signing import Trust, connection_doc, generate

    if not SIGNING_KEY.exists():
        write_private(SIGNING_KEY, json.dumps(connection_doc(Trust(generate()[0]))) + "\n")
    return json.loads(SIGNING_KEY.read_text())


def _trust(conn: dict):
    from tasks.device.signing import trust_from_connection

    return trust_from_connection(conn["password"], json.loads(conn["extra"]))


def cmd_rotate_key(cfg: dict, finish: bool) -> None:
    """Key rotation, one command per step: a new signing key with the old public key still accepted (devices
    get both at their next deploy); ``--finish`` drops the old key once every device was deployed since."""
    from tasks.device.signing import connection_doc, rotated

    old = signing_connection()
    trust = rotated(_trust(old), finish)
    write_private(SIGNING_KEY, json.dumps(connection_doc(trust)) + "\n")
    if airflow.status(cfg):
        airflow.import_connections(cfg, {names.SIGNING_CONN_ID: signing_connection()})
    print(f"signing key {trust.key_id}; devices accept {sorted(trust.public_keys())}")


def env_doc(cfg: dict) -> dict:
    m = cfg["minio"]
    access, secret = minio.service_account(cfg)
    connections = {cfg["airflow"]["minio_conn_id"]: minio.connection(cfg), names.SIGNING_CONN_ID: signing_connection()}
    live = live_devices(cfg)
    for dev, _, conn in live:
        connections[devices.conn_id(dev["name"])] = conn
    return {
        "s3": {
            "endpoint": minio.endpoint(cfg),
            "access_key": access,
            "secret_key": secret,
            "artifacts_bucket": m["artifacts_bucket"],
            "datasets_bucket": m["datasets_bucket"],
            "console_url": minio.console_url(cfg),
        },
        # MinIO's root user: only the dev stack itself and tests' clean-up use it, never the pipeline
        "s3_admin": {"access_key": m["access_key"], "secret_key": m["secret_key"]},
        # the REST clients' login: the user, and the 0600 file with its password (never the password itself)
        "airflow": {"url": airflow.url(cfg), "home": str(airflow.HOME), "env_file": str(airflow.ENV_FILE),
                    "user": airflow.ADMIN, "passwords_file": str(airflow.PASSWORDS)},
        "devices": [described for _, described, _ in live],
        "connections": connections,
    }


def shell_lines(doc: dict) -> list[str]:
    s3 = doc["s3"]
    values = {
        "EDGEOPS_S3_ENDPOINT": s3["endpoint"],
        "AWS_ACCESS_KEY_ID": s3["access_key"],
        "AWS_SECRET_ACCESS_KEY": s3["secret_key"],
        "AWS_DEFAULT_REGION": "us-east-1",
        "EDGEOPS_ARTIFACTS_BUCKET": s3["artifacts_bucket"],
        "EDGEOPS_DATASETS_BUCKET": s3["datasets_bucket"],
    }
    if devices.FLEET_JSON.exists():
        values[names.ENV_FLEET] = str(devices.FLEET_JSON)
    for conn_id, conn in doc["connections"].items():
        if conn_id == names.SIGNING_CONN_ID:  # the signing key stays in Airflow: only its PUBLIC keys are exported
            values[names.ENV_TRUSTED_KEYS] = ",".join(_trust(conn).public_keys().values())
            continue
        values[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(conn, separators=(",", ":"))
    return [f"export {k}={shlex.quote(v)}" for k, v in values.items()]


def apply_device_count(cfg: dict, requested: int | None) -> dict:
    """The stack config with pi1..piN (`up --devices N`, remembered for later commands); with a smaller N than
    last time, the devices no longer wanted are stopped."""
    saved = devices.saved_count()
    n = requested if requested is not None else saved
    if n is None:
        return cfg
    if requested is not None:
        if saved and saved > requested:
            wanted = {d["name"] for d in devices.with_devices(cfg, requested)["devices"]}
            extra = [d for d in devices.with_devices(cfg, saved)["devices"] if d["name"] not in wanted]
            devices.down({"devices": extra})
        devices.save_count(requested)
    return devices.with_devices(cfg, n)


def fleet_doc(cfg: dict, waves: int = 2, live: set[str] | None = None) -> dict:
    return devices.fleet_inventory(cfg, json.loads(BASE_FLEET.read_text()), waves, live)


def cmd_up(cfg: dict, with_airflow: bool, with_containers: bool = False) -> None:
    start = time.monotonic()
    minio.up(cfg)
    devices.up(cfg)
    if with_containers:
        containers.up(cfg)
    doc = env_doc(cfg)
    write_private(ENV_JSON, json.dumps(doc, indent=2) + "\n")
    print(f"env: wrote {ENV_JSON}")
    live = {d["name"] for d in doc["devices"]}  # a container device that is not up is not in the fleet
    devices.FLEET_JSON.write_text(json.dumps(fleet_doc(cfg, live=live), indent=2) + "\n")
    print(f"fleet: wrote {devices.FLEET_JSON} ({len(doc['devices'])} devices up)")
    if with_airflow:
        airflow.up(cfg, doc["connections"])
    print(f"devstack up in {time.monotonic() - start:.1f}s")
    cmd_status(cfg)


def cmd_down(cfg: dict) -> None:
    airflow.down()
    containers.down(cfg)
    devices.down(cfg)
    minio.down()


def cmd_status(cfg: dict) -> int:
    ok = minio.status(cfg)
    ok = devices.status(cfg) and ok
    ok = containers.status(cfg) and ok
    airflow.status(cfg)
    print(f"env:       {ENV_JSON}{'' if ENV_JSON.exists() else ' (missing: run up)'}")
    return 0 if ok else 3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.devstack", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="start MinIO, the simulated devices and (unless --no-airflow) Airflow")
    up.add_argument(
        "--no-airflow", action="store_true", help="only MinIO + devices (the test suite uses this)"
    )
    up.add_argument(
        "--with-containers",
        action="store_true",
        default=os.environ.get(WITH_CONTAINERS_ENV, "").lower() in ("1", "true", "yes"),
        help=f"also start the container devices (kind qemu; needs scripts/engine.sh); or {WITH_CONTAINERS_ENV}=1",
    )
    up.add_argument(
        "--devices", type=int, metavar="N",
        help="run N simulated devices pi1..piN on ports 2221.. (remembered for status/env/down; default: the "
             "config's, or the last N)",
    )
    sub.add_parser("down", help="stop everything devstack started (and remove the device containers)")
    fleet = sub.add_parser("fleet", help="print a fleet inventory (config/fleet.json format) for the devices")
    fleet.add_argument("--waves", type=int, default=2, help="waves, the canary (pi1) included (default 2)")
    sub.add_parser(
        "status", help="show what runs, with URLs; exit 3 if MinIO or a non-optional device is down"
    )
    rotate = sub.add_parser("rotate-key", help="rotate the release signing key (old key still accepted)")
    rotate.add_argument("--finish", action="store_true", help="drop the old key (after every device deployed)")
    sub.add_parser("password", help="print the Airflow admin's password (generated at the first `up`)")
    env = sub.add_parser("env", help="print the stack's JSON description (or export lines with --shell)")
    env.add_argument("--shell", action="store_true", help="print `export` lines for a POSIX shell")
    args = parser.parse_args(argv)

    try:
        cfg = apply_device_count(with_minio_root(load_stack()), None)
        if args.cmd == "fleet":
            print(json.dumps(fleet_doc(cfg, args.waves), indent=2))
            return 0
        if args.cmd == "env":
            doc = env_doc(cfg)
            print("\n".join(shell_lines(doc)) if args.shell else json.dumps(doc, indent=2))
            return 0
        if args.cmd == "status":
            return cmd_status(cfg)
        if args.cmd == "password":
            print(f"Airflow {airflow.url(cfg)}: user {airflow.ADMIN}, password:", file=sys.stderr)
            print(airflow.password())
            return 0
        if args.cmd == "rotate-key":
            cmd_rotate_key(cfg, args.finish)
            return 0
        STATE.mkdir(parents=True, exist_ok=True)
        with open(STATE / ".lock", "w") as lock:  # one up/down at a time
            fcntl.flock(lock, fcntl.LOCK_EX)
            if args.cmd == "up":
                cfg = apply_device_count(with_minio_root(load_stack()), args.devices)
                cmd_up(cfg, with_airflow=not args.no_airflow, with_containers=args.with_containers)
            else:
                cmd_down(cfg)
        return 0
    except DevstackError as exc:
        print(f"devstack {args.cmd}: ERROR: {exc}", file=sys.stderr)
        if args.cmd == "up":
            print(
                "  (components already started keep running; stop them with: "
                f"{USAGE_UP.replace(' up', ' down')})",
                file=sys.stderr,
            )
        if args.cmd == "env":
            print(f"  (run: {USAGE_UP} --no-airflow)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:  # e.g. `status | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
