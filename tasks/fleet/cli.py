"""``edgeops fleet …`` (inventory, status) and the top-level ``edgeops rollout`` / ``edgeops rollback`` /
``edgeops collect``. ``tasks/cli.py`` only calls ``add_parser``, ``add_rollout_parsers`` and
``add_collect_parser``; a new action is one more sub-parser here."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from tasks.core import names
from tasks.core.exceptions import ConfigError
from tasks.core.modes import QUANT_MODES
from tasks.fleet.inventory import Inventory, load_inventory

FLEET_FILE_HELP = f"fleet JSON (default: ${names.ENV_FLEET} or config/fleet.json)"


def add_parser(sub: argparse._SubParsersAction) -> None:
    fleet = sub.add_parser("fleet", help="the device fleet: inventory (groups, waves, budgets), status")
    actions = fleet.add_subparsers(dest="fleet_command", required=True)
    inv = actions.add_parser("inventory", help="print the validated fleet inventory, by wave")
    inv.add_argument("--file", help=FLEET_FILE_HELP)
    inv.add_argument("--json", action="store_true", help="print the normalised JSON instead of a table")
    inv.set_defaults(func=cmd_inventory)
    status = actions.add_parser("status", help="what each device runs, from the store (state + rollout records)")
    status.add_argument("--file", help=FLEET_FILE_HELP)
    status.add_argument("--json", action="store_true", help="print JSON: devices, newest rollouts")
    status.add_argument("--check", action="store_true",
                        help="also read each device's current link over SSH and flag drift (needs the Airflow "
                             "device connections: eval $(.venv/bin/python -m scripts.devstack env --shell))")
    status.set_defaults(func=cmd_status)


def add_rollout_parsers(sub: argparse._SubParsersAction) -> None:
    """``edgeops rollout`` and ``edgeops rollback``: trigger the edgeops_rollout DAG through Airflow's REST API."""
    fwd = sub.add_parser("rollout", help="roll a blessed run out to the fleet (canary first) through Airflow")
    fwd.add_argument("--run", default="", metavar="RUN_ID", help="the nightly run to ship (default: newest blessed)")
    fwd.add_argument("--devices", metavar="A,B", help="only these devices")
    fwd.add_argument("--group", metavar="G[,H]", help="only the devices of these groups")
    fwd.add_argument("--variant", choices=QUANT_MODES, help="ship this variant everywhere (default: best per group)")
    back = sub.add_parser("rollback", help="switch devices back to a release they keep, through Airflow")
    which = back.add_mutually_exclusive_group(required=True)
    which.add_argument("--devices", metavar="A,B", help="these devices")
    which.add_argument("--group", metavar="G[,H]", help="every device of these groups")
    back.add_argument("--to", default="", metavar="RUN_ID", help="the run to go back to (default: what each device ran "
                      "before the last rollout that changed it)")
    for p in (fwd, back):
        p.add_argument("--file", help=FLEET_FILE_HELP + "; names are checked against it before triggering")
        p.add_argument("--wait", action="store_true", help="follow the run and print its rollout record; exit 0 "
                                                           "only if it succeeded")
        p.set_defaults(func=cmd_trigger)


def add_collect_parser(sub: argparse._SubParsersAction) -> None:
    """``edgeops collect``: what the edgeops_collect DAG does, from a shell (device connections from the env)."""
    col = sub.add_parser("collect", help="pull edgeops-serve's telemetry and samples from the devices into MinIO "
                                         "(deleted on a device only once the upload is confirmed)")
    col.add_argument("--devices", metavar="A,B", help="only these devices")
    col.add_argument("--group", metavar="G[,H]", help="only the devices of these groups")
    col.add_argument("--dataset", default="", metavar="s3://BUCKET/PREFIX",
                     help="put every sample under this dataset's _incoming/ (default: each release's run's "
                          "data.source)")
    col.add_argument("--file", help=FLEET_FILE_HELP)
    col.add_argument("--json", action="store_true", help="print the records as JSON")
    col.set_defaults(func=cmd_collect)


def cmd_collect(args: argparse.Namespace) -> None:
    from tasks.core.exceptions import DeviceUnreachableError, EdgeOpsError
    from tasks.core.storage import ArtifactStore
    from tasks.device.transport import EnvTransport
    from tasks.fleet.collect import collect_device
    from tasks.fleet.trigger import split_names

    if args.dataset and not args.dataset.startswith("s3://"):
        raise ConfigError(f"--dataset {args.dataset!r}: give s3://<bucket>/<prefix>")
    inventory, store = load_inventory(args.file), ArtifactStore.from_env()
    records, failed = [], []
    for device in inventory.select(split_names(args.devices), split_names(args.group)):
        try:
            with EnvTransport(device.name, device.connection) as transport:
                record = collect_device(transport, store, args.dataset)
        except DeviceUnreachableError as exc:
            if not device.optional:
                failed.append(f"{device.name}: offline: {exc}")
            print(f"{device.name}: offline, not collected: {exc}", file=sys.stderr)
            continue
        except EdgeOpsError as exc:
            failed.append(f"{device.name}: {type(exc).__name__}: {exc}")
            continue
        records.append(record)
        failed += [] if record.ok else [f"{device.name}: {record.failed} file(s) failed"]
    print(json.dumps([r.to_xcom() for r in records], indent=2) if args.json else
          "\n".join(r.summary() for r in records))
    if failed:
        raise EdgeOpsError("collection incomplete (what failed stays on the device for the next run):\n"
                           + "\n".join(failed))


def cmd_inventory(args: argparse.Namespace) -> None:
    inventory = load_inventory(args.file)
    print(json.dumps(inventory.to_dict(), indent=2) if args.json else "\n".join(inventory_lines(inventory)))


def cmd_status(args: argparse.Namespace) -> None:
    from tasks.core.storage import ArtifactStore
    from tasks.fleet import status
    from tasks.fleet.history import recent_records
    from tasks.registry import runs

    inventory, store = load_inventory(args.file), ArtifactStore.from_env()
    records = recent_records(store)
    rows = status.fleet_status(store, inventory, records)
    if args.check:
        rows = [status.check(row, inventory.device(row.device), status.read_with_env_connection) for row in rows]
    nights = _last_nights(store)
    if args.json:
        print(json.dumps({**status.to_json(rows, records, args.check), "nights": nights.to_xcom()}, indent=2))
        return
    columns = status.CHECK_COLUMNS if args.check else status.COLUMNS
    print(runs.format_table(status.table_rows(rows), columns))
    if records:
        print(f"\nnewest rollout: {records[0].summary()}")
    print("\n" + "\n".join(night_lines(nights)))


def _last_nights(store: Any) -> Any:
    """The newest blessed run and the newest nightly (state from Airflow if it answers within 5 s)."""
    from tasks.fleet.airflow_api import AirflowApi
    from tasks.fleet.nights import last_nights

    api = AirflowApi.from_env()
    api.timeout = 5.0
    return last_nights(store, api)


def night_lines(nights: Any) -> list[str]:
    import datetime as dt

    from tasks.fleet.nights import lines

    return lines(nights, dt.datetime.now(dt.UTC))


def cmd_trigger(args: argparse.Namespace) -> None:
    from tasks.fleet.records import FORWARD, ROLLBACK
    from tasks.fleet.trigger import rollout_conf, split_names, trigger

    forward = args.command == "rollout"
    conf = rollout_conf(load_inventory(args.file), FORWARD if forward else ROLLBACK,
                        run_id=args.run if forward else args.to, devices=split_names(args.devices),
                        groups=split_names(args.group), variant=(args.variant or "") if forward else "")
    trigger(conf, args.wait)


def inventory_lines(inventory: Inventory) -> list[str]:
    """A table of the devices by wave, then each group's runtime options and budgets."""
    rows = [("wave", "device", "group", "connection", "")]
    for wave, devices in enumerate(inventory.waves()):
        label = f"{wave} (canary)" if wave == 0 else str(wave)
        rows += [(label, d.name, d.group, d.connection, "optional" if d.optional else "") for d in devices]
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.append("")
    for g in inventory.groups:
        b = g.budgets
        delegate = g.delegate + (f" {g.delegate_options}" if g.delegate_options else "")
        lines.append(f"group {g.name}: threads {g.threads}, delegate {delegate}; budgets: p95 <= {b.p95_latency_ms:g} "
                     f"ms, peak RSS <= {b.peak_rss_mb:g} MB, accuracy >= host - {b.accuracy_tolerance:g}")
    return lines
