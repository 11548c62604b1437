"""``edgeops fleet …``: the fleet subcommands. ``tasks/cli.py`` only calls ``add_parser``; a new action (e.g.
``status``) is one more sub-parser here."""

from __future__ import annotations

import argparse
import json

from tasks import names
from tasks.fleet.inventory import Inventory, load_inventory


def add_parser(sub: argparse._SubParsersAction) -> None:
    fleet = sub.add_parser("fleet", help="the device fleet: inventory (groups, waves, budgets)")
    actions = fleet.add_subparsers(dest="fleet_command", required=True)
    inv = actions.add_parser("inventory", help="print the validated fleet inventory, by wave")
    inv.add_argument("--file", help=f"fleet JSON (default: ${names.ENV_FLEET} or config/fleet.json)")
    inv.add_argument("--json", action="store_true", help="print the normalised JSON instead of a table")
    inv.set_defaults(func=cmd_inventory)


def cmd_inventory(args: argparse.Namespace) -> None:
    inventory = load_inventory(args.file)
    print(json.dumps(inventory.to_dict(), indent=2) if args.json else "\n".join(inventory_lines(inventory)))


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
