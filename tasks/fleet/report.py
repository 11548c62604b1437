"""A rollout as one self-contained HTML page: ``rollouts/<id>/report.html``, written just before the record.

It shows the status and its reasons; per group the variant chosen on the canaries, why, and the health table
(each canary x variant against the group's budgets); the traffic canary's verdicts; per device what happened
(switched, rolled back, failed, not reached), the release and variant it runs and its on-device benchmark,
labelled host/emulated/native.
Every piece of text goes through ``html.escape``; no external resources.
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
from typing import Any

from tasks.core import keys
from tasks.core.storage import Artifact, ArtifactStore
from tasks.fleet.records import DeviceHealth, DeviceOutcome, GroupChoice, Outcome, RolloutRecord, RolloutStatus
from tasks.fleet.traffic import FAILED, PASSED, TrafficVerdict
from tasks.report.charts import (
    CONTENT_TYPE,
    LABEL_NOTE,
    device_table,
    fmt,
    meta_list,
    page,
    pass_fail,
    reasons_list,
    table,
)

OUTCOMES = {Outcome.SWITCHED: "switched", Outcome.ROLLED_BACK: "rolled back", Outcome.FAILED: "failed",
            Outcome.SKIPPED: "skipped (optional)", Outcome.NOT_REACHED: "not reached"}
PASS_FAIL = {Outcome.SWITCHED: True, Outcome.FAILED: False}  # the others are shown plain
Budgets = Mapping[str, Mapping[str, float]]  # group -> {p95_latency_ms, peak_rss_mb, accuracy_tolerance}


def _cells(values: list[Any], left: int) -> str:
    """``<td>`` cells, escaped; the first ``left`` ones left-aligned."""
    out = []
    for i, v in enumerate(values):
        cls = ' class="l"' if i < left else ""
        out.append(f"<td{cls}>{escape(str(v if v not in (None, '') else '—'))}</td>")
    return "".join(out)


def _budget_line(group: str, budgets: Budgets | None) -> str:
    b = (budgets or {}).get(group)
    if not b:
        return ""
    return (f"<p>Budgets: p95 &le; {fmt(b.get('p95_latency_ms'), 'g')} ms, peak RSS &le; "
            f"{fmt(b.get('peak_rss_mb'), 'g')} MB, accuracy &ge; host &minus; {fmt(b.get('accuracy_tolerance'), 'g')}"
            "</p>")


def _health_row(h: DeviceHealth, chosen: str | None) -> str:
    vs_host = None if h.accuracy is None or h.host_accuracy is None else (h.accuracy - h.host_accuracy) * 100
    tds = _cells([h.device, h.variant + (" (chosen)" if h.variant == chosen else "")], 2)
    tds += (f"<td>{fmt(h.p95_ms, '.3f')}</td><td>{fmt(h.peak_rss_mb, '.1f')}</td>"
            f"<td>{fmt(h.accuracy, '.2f', 100, ' %')}</td><td>{fmt(h.host_accuracy, '.2f', 100, ' %')}</td>"
            f"<td>{fmt(vs_host, '+.2f', 1, ' pp')}</td><td>{pass_fail(h.healthy)}</td>")
    tds += f'<td class="l">{escape("; ".join(h.reasons)) or "within budgets"}</td>'
    return f"<tr{' class=current' if h.variant == chosen and h.healthy else ''}>{tds}</tr>"


HEALTH_HEAD = ("canary", "variant", "p95 ms", "peak RSS MB", "accuracy", "host accuracy", "vs host", "result",
               "reasons")


def _group_section(choice: GroupChoice, budgets: Budgets | None) -> str:
    picked = choice.variant or "none: no variant meets the budgets"
    on = f" (measured on {', '.join(choice.measured_on)})" if choice.measured_on else " (not measured)"
    health = table(HEALTH_HEAD, [_health_row(h, choice.variant) for h in choice.health], left=2)
    return (f"<h3>Group {escape(choice.group)}: {escape(picked)}{escape(on)}</h3>{_budget_line(choice.group, budgets)}"
            f"{reasons_list(choice.reasons)}{health if choice.health else ''}")


OUTCOME_HEAD = ("device", "group", "wave", "outcome", "release", "variant", "label", "note")


def _outcome_row(d: DeviceOutcome) -> str:
    status, ok = OUTCOMES[d.status], PASS_FAIL.get(d.status)
    cell = pass_fail(ok, status, status) if ok is not None else escape(status)
    return (f'<tr>{_cells([d.device, d.group], 2)}<td>{d.wave}</td><td class="l">{cell}</td>'
            f"{_cells([d.release, d.variant, d.label, d.note], 4)}</tr>")


def _benchmarks(devices: tuple[DeviceOutcome, ...]) -> str:
    rows = [{"device": d.device, "label": d.label, "current_variant": d.variant,
             "models": {m: b.to_xcom() for m, b in d.bench.items()}} for d in devices if d.bench]
    return device_table(rows, arch=False) or "<p>No device was benchmarked in this rollout.</p>"


TRAFFIC_HEAD = ("canary", "group", "release", "requests", "errors + bad", "served p95 ms", "mean confidence",
                "previous release", "its confidence", "waited s", "result", "reasons")


def _traffic_row(v: TrafficVerdict) -> str:
    old = v.old.mean_confidence if v.old else None
    result = pass_fail(v.status == PASSED, "passed", "failed") if v.status in (PASSED, FAILED) else "no traffic"
    return (f"<tr>{_cells([v.device, v.group, v.release], 3)}<td>{v.new.requests}</td>"
            f"<td>{v.new.errors} + {v.new.bad_requests}</td><td>{fmt(v.new.latency_p95_ms, '.3f')}</td>"
            f"<td>{fmt(v.new.mean_confidence, '.3f')}</td>{_cells([v.previous], 1)}<td>{fmt(old, '.3f')}</td>"
            f"<td>{fmt(v.waited_s, '.0f')}</td><td>{result}</td>"
            f'<td class="l">{escape("; ".join(v.reasons))}</td></tr>')


def _traffic(verdicts: tuple[TrafficVerdict, ...]) -> str:
    if not verdicts:
        return ""
    lines = "".join(
        f"<p>Group {escape(g)}: at least {s.min_requests} requests of the new release or {s.max_wait_s:g} s; error "
        f"rate &le; {s.max_error_rate:.2%}, served p95 &le; {s.max_p95_ms:g} ms, mean-confidence drop &le; "
        f"{s.max_confidence_drop:g}.</p>" for g, s in sorted({v.group: v.settings for v in verdicts}.items()))
    note = "<p>Judged on real traffic (the group's <code>traffic_canary</code>); without enough traffic the " \
           "benchmark gate decides.</p>"
    return f"<h2>Traffic canary</h2>{note}{lines}{table(TRAFFIC_HEAD, [_traffic_row(v) for v in verdicts], left=3)}"


def render_rollout_html(record: RolloutRecord, budgets: Budgets | None = None) -> str:
    """The whole page for one rollout record; ``budgets`` (the plan's, group -> Budgets as a dict) adds each
    group's budget line."""
    title = f"EdgeOps rollout {record.rollout_id}"
    meta = [("Rollout", record.rollout_id), ("Action", record.action), ("Run", record.run_id or "previous release"),
            ("Status", record.status), ("Created", record.created_at or "?"),
            ("Airflow run", record.airflow_run_id or "?"), ("Summary", record.summary())]
    status = pass_fail(record.status == RolloutStatus.SUCCEEDED, "SUCCEEDED", record.status.upper().replace("_", " "))
    groups = "".join(_group_section(c, budgets) for _, c in sorted(record.choices.items()))
    body = f"""<h1>{escape(title)}</h1>
{meta_list(meta)}
<h2>Status</h2>
<p>{status}</p>{reasons_list(record.reasons)}
<h2>Groups</h2>
{groups or "<p>No variant was chosen in this rollout (a rollback restores whole releases).</p>"}
{_traffic(record.traffic)}
<h2>Devices</h2>
{table(OUTCOME_HEAD, [_outcome_row(d) for d in record.devices], left=2)}
<h2>On-device benchmarks</h2>
{LABEL_NOTE}
{_benchmarks(record.devices)}"""
    return page(title, body)


def write_rollout_report(store: ArtifactStore, record: RolloutRecord, budgets: Budgets | None = None) -> Artifact:
    """Render the record and upload it to ``rollouts/<id>/report.html`` (call it before writing the record)."""
    html = render_rollout_html(record, budgets).encode("utf-8")
    return store.put_bytes(keys.rollout_report(record.rollout_id), html, name="report.html",
                           content_type=CONTENT_TYPE)
