"""The Fleet page (shown inside Airflow's UI by the edgeops plugin): every device of the inventory, what it runs
since when, ok or stale, its newest on-device benchmark, and links to the rollout reports.

The rows are ``fleet status``'s (``status.fleet_status``), read from the store alone; this module only adds
the newest benchmark and renders HTML. Links go through ``object_link`` (the plugin passes its authenticated
redirect to a presigned URL), so nothing here knows about Airflow.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from html import escape

from tasks.core import keys
from tasks.core.storage import ArtifactStore
from tasks.fleet.history import recent_records
from tasks.fleet.inventory import Inventory
from tasks.fleet.records import FORWARD, Outcome, RolloutRecord
from tasks.fleet.status import OK, DeviceStatus, fleet_status

NEWEST_ROLLOUTS = 8  # how many rollouts the page lists below the devices


@dataclass(frozen=True)
class Bench:
    """The newest on-device benchmark of the variant a device was switched to."""

    rollout_id: str
    variant: str
    p50_ms: float
    p95_ms: float
    accuracy: float
    label: str  # native | emulated | host


@dataclass(frozen=True)
class FleetRow:
    status: DeviceStatus
    bench: Bench | None


@dataclass(frozen=True)
class FleetPage:
    rows: tuple[FleetRow, ...]
    rollouts: tuple[RolloutRecord, ...]  # newest first


def newest_bench(records: list[RolloutRecord], device: str) -> Bench | None:
    """From the newest record (``records`` newest first) that benchmarked ``device`` on its switched variant."""
    for record in records:
        for d in record.devices:
            b = d.bench.get(d.variant or "") if d.device == device and d.status == Outcome.SWITCHED else None
            if b is not None and {"p50", "p95"} <= set(b.latency_ms):
                return Bench(record.rollout_id, d.variant or "", float(b.latency_ms["p50"]),
                             float(b.latency_ms["p95"]), float(b.accuracy), d.label or "unknown")
    return None


def fleet_page(store: ArtifactStore, inventory: Inventory) -> FleetPage:
    records = recent_records(store)
    rows = tuple(FleetRow(s, newest_bench(records, s.device)) for s in fleet_status(store, inventory, records))
    return FleetPage(rows, tuple(records[:NEWEST_ROLLOUTS]))


# --- HTML ----------------------------------------------------------------------------------------------------
ObjectLink = Callable[[str], str]  # store key -> URL a browser opens

STYLE = """
body{font-family:system-ui,sans-serif;margin:1.2rem;color:#1b1f24}h1{font-size:1.4rem;margin:0 0 .3rem}
h2{font-size:1.1rem;margin-top:1.6rem}table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{padding:.35rem .6rem;border-bottom:1px solid #dde1e6;text-align:left;vertical-align:top}
th{background:#f3f5f7}td.num{text-align:right;font-variant-numeric:tabular-nums}
.status,.drift{font-weight:600;border-radius:.6rem;padding:.05rem .5rem}.ok{background:#d8f5dd;color:#116329}
.stale,.drift{background:#fde2d8;color:#9a2b00}.never{background:#eceff2;color:#57606a}
.reason{color:#6e7781;font-size:.8rem}p.note{color:#57606a;font-size:.85rem}
"""


def _status_cell(s: DeviceStatus) -> str:
    css = s.status if s.status != "never deployed" else "never"
    reason = f'<div class="reason">{escape(s.reason)}</div>' if s.reason and s.status != OK else ""
    return f'<td><span class="status {escape(css)}">{escape(s.status)}</span>{reason}</td>'


def _drift_cell(s: DeviceStatus) -> str:
    """The drift verdict of the release the device runs (its reason as a tooltip)."""
    if s.drift is None:
        return "<td>-</td>"
    css = {"ok": "ok", "drift": "stale"}.get(s.drift.status, "never")
    return (f'<td><span class="drift {css}" title="{escape(s.drift.reason)}">{escape(s.drift.cell())}</span>'
            "</td>")


def _report_link(rollout_id: str, link: ObjectLink) -> str:
    if not rollout_id:
        return "-"
    return f'<a target="_blank" href="{escape(link(keys.rollout_report(rollout_id)))}">{escape(rollout_id)}</a>'


def _bench_cells(b: Bench | None) -> str:
    if b is None:
        return '<td class="num">-</td><td class="num">-</td><td class="num">-</td><td>-</td>'
    return (f'<td class="num">{b.p50_ms:.3f}</td><td class="num">{b.p95_ms:.3f}</td>'
            f'<td class="num">{b.accuracy:.3f}</td><td>{escape(b.label)} ({escape(b.variant)})</td>')


def _device_row(row: FleetRow, link: ObjectLink) -> str:
    s = row.status
    state = (f'<a target="_blank" href="{escape(link(keys.device_state(s.device)))}">{escape(s.device)}</a>'
             if s.release is not None or s.since else escape(s.device))
    return (f'<tr id="device-{escape(s.device)}"><td>{state}</td><td>{escape(s.group)}</td>'
            f'<td class="num">{s.wave}</td><td>{escape(s.release or "-")}</td><td>{escape(s.variant or "-")}</td>'
            f'<td>{escape(s.since or "-")}</td>{_status_cell(s)}{_drift_cell(s)}{_bench_cells(row.bench)}'
            f'<td>{_report_link(s.last_rollout, link)}</td></tr>')


def _rollout_row(r: RolloutRecord, link: ObjectLink) -> str:
    return (f"<tr><td>{_report_link(r.rollout_id, link)}</td><td>{escape(r.created_at)}</td>"
            f"<td>{escape(r.action)}</td><td>{escape(r.run_id or 'previous')}</td><td>{escape(str(r.status))}</td>"
            f"<td>{escape('; '.join(r.reasons))}</td></tr>")


def rolled_out_section(run_id: str, records: list[RolloutRecord], link: ObjectLink) -> str:
    """The run report's "Rolled out" section: every forward rollout of ``run_id``, its status and what each
    device ended on (the stored report is written at publish, before any rollout; this is added when served)."""
    mine = [r for r in records if r.run_id == run_id and r.action == FORWARD]
    if not mine:
        return ('<h2 id="rolled-out">Rolled out</h2><p>Not rolled out yet: no rollout record names this run (it is '
                "not blessed, its profile may not ship, or its rollout has not finished).</p>")
    rows = "".join(
        f"<tr><td>{_report_link(r.rollout_id, link)}</td><td>{escape(r.created_at)}</td>"
        f"<td>{escape(str(r.status))}</td><td>{escape(d.device)}</td><td>{escape(str(d.status))}</td>"
        f"<td>{escape(d.variant or '-')}</td></tr>" for r in mine for d in r.devices)
    return ('<h2 id="rolled-out">Rolled out</h2><table id="rolled-out-table"><tr><th>rollout (report)</th>'
            f"<th>finished</th><th>status</th><th>device</th><th>outcome</th><th>variant</th></tr>{rows}</table>")


def render(page: FleetPage, link: ObjectLink) -> str:
    """The whole page: a device table and the newest rollouts, each linked to its HTML report."""
    heads = ("device", "group", "wave", "release", "variant", "since", "status", "drift", "p50 ms", "p95 ms",
             "accuracy", "measured on", "last rollout")
    devices = "".join(_device_row(r, link) for r in page.rows)
    rollouts = "".join(_rollout_row(r, link) for r in page.rollouts) or '<tr><td colspan="6">none yet</td></tr>'
    return (
        '<!doctype html><html><head><meta charset="utf-8"><title>edgeops fleet</title>'
        f"<style>{STYLE}</style></head><body><h1>Fleet</h1>"
        '<p class="note">What every device runs, from its state record and the newest rollout that targeted it '
        "(the same as <code>edgeops fleet status</code>). Benchmarks are the newest on-device run of the variant "
        "the device was switched to; <em>drift</em> compares its collected production traffic with the release's "
        "test split (PSI; <code>tasks/fleet/drift.py</code>); <em>host</em> timings come from x86 stand-ins, not "
        "Raspberry Pis.</p>"
        f'<table id="devices"><thead><tr>{"".join(f"<th>{h}</th>" for h in heads)}</tr></thead>'
        f"<tbody>{devices}</tbody></table>"
        '<h2>Newest rollouts</h2><table id="rollouts"><thead><tr><th>rollout (report)</th><th>finished</th>'
        "<th>action</th><th>run</th><th>status</th><th>reasons</th></tr></thead>"
        f"<tbody>{rollouts}</tbody></table></body></html>")
