"""Render a run's manifest as one self-contained HTML page and upload it next to the run's artifacts.

The page has no external resources: inline CSS and charts as base64 PNGs (matplotlib Agg, imported lazily).
Every piece of text that comes from the manifest goes through ``html.escape``.
Timings labelled ``host`` or ``emulated`` were taken on x86 and are never presented as Raspberry Pi speeds.
"""

from __future__ import annotations

import base64
import io
import math
from html import escape
from typing import Any

from tasks import keys
from tasks.config import QUANT_MODES
from tasks.report_history import history_section
from tasks.storage import Artifact, ArtifactStore

CONTENT_TYPE = "text/html; charset=utf-8"

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem;color:#222;max-width:1200px}
h1{font-size:1.5rem;margin-bottom:.2rem} h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd}
dl{display:grid;grid-template-columns:max-content auto;gap:.2rem 1rem} dt{font-weight:600} dd{margin:0}
table{border-collapse:collapse;font-size:.9rem}
th,td{border:1px solid #ddd;padding:.3rem .6rem;text-align:right}
th{background:#f4f4f4} td.l,th.l{text-align:left} tr.current{background:#eef7ee}
.pass{color:#176f2c;font-weight:600} .fail{color:#b00020;font-weight:600}
.note{background:#fff8e1;border-left:4px solid #f0b400;padding:.5rem .8rem;margin:.8rem 0}
.charts{display:flex;flex-wrap:wrap;gap:1rem} .charts img{max-width:380px;border:1px solid #eee}
figure{margin:0} figcaption{font-size:.8rem;color:#555;text-align:center}
"""


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        return None
    return float(value)


def _fmt(value: Any, spec: str = ".2f", scale: float = 1.0, suffix: str = "") -> str:
    v = _num(value)
    return "—" if v is None else f"{v * scale:{spec}}{suffix}"


def _size(value: Any) -> str:
    v = _num(value)
    if v is None:
        return "—"
    return f"{v / 2**20:.2f} MB" if v >= 2**20 else f"{v / 2**10:.1f} KB"


def _ordered_variants(variants: dict[str, Any]) -> list[str]:
    known = [m for m in QUANT_MODES if m in variants]
    return known + sorted(m for m in variants if m not in QUANT_MODES)


def _chart(title: str, names: list[str], values: list[float | None], ylabel: str,
           upper: list[float | None] | None = None) -> str:
    """A bar chart as a base64 PNG; ``upper`` draws an error bar from each bar up to that value (e.g. p90)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.2, 3.0), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    heights = [v if v is not None else 0.0 for v in values]
    tops = [max(u or 0.0, h) for u, h in zip(upper or heights, heights, strict=True)]
    above = [t - h for t, h in zip(tops, heights, strict=True)]
    yerr = None if upper is None else [[0.0] * len(heights), above]
    bars = ax.bar(names, heights, color="#4c78a8", yerr=yerr, capsize=4 if yerr else 0)
    for bar, v, top in zip(bars, values, tops, strict=True):
        ax.annotate("n/a" if v is None else f"{v:.3g}", (bar.get_x() + bar.get_width() / 2, top),
                    xytext=(0, 2), textcoords="offset points", ha="center", va="bottom", fontsize=8)
    ax.margins(y=0.12)
    ax.set_title(title, fontsize=10)
    ax.set_ylabel(ylabel)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _charts(variants: dict[str, Any], names: list[str]) -> str:
    if not names:
        return "<p>No variants were evaluated in this run.</p>"
    acc_pct = [None if (a := _num(variants[m].get("accuracy"))) is None else a * 100 for m in names]
    sizes = [_num(variants[m].get("size_bytes")) for m in names]
    big = max((s for s in sizes if s is not None), default=0) >= 2**20
    unit, div = ("MB", 2**20) if big else ("KB", 2**10)
    p50 = [_num(variants[m].get("latency_p50_ms")) for m in names]
    p90 = [_num(variants[m].get("latency_p90_ms")) for m in names]
    size_vals = [None if s is None else s / div for s in sizes]
    charts = [
        ("Accuracy by variant", _chart("Accuracy by variant", names, acc_pct, "accuracy (%)")),
        (f"Model size by variant ({unit})", _chart(f"Model size ({unit})", names, size_vals, unit)),
        ("Host latency, not device: p50 bar, p90 whisker (ms)",
         _chart("Host latency, not device (p50, p90 whisker)", names, p50, "ms", upper=p90)),
    ]
    return _figures(charts)


def _figures(charts: list[tuple[str, str]]) -> str:
    imgs = "".join(f'<figure><img alt="{escape(t)}" src="data:image/png;base64,{png}">'
                   f"<figcaption>{escape(t)}</figcaption></figure>" for t, png in charts)
    return f'<div class="charts">{imgs}</div>'


def _pass_cell(verdict: dict[str, Any] | None) -> str:
    if not verdict:
        return "—"
    return '<span class="pass">pass</span>' if verdict.get("passed") else '<span class="fail">fail</span>'


def _variants_table(manifest: dict[str, Any], names: list[str]) -> str:
    variants = manifest.get("variants") or {}
    gate = manifest.get("gate") or {}
    current, deploy = gate.get("current"), set(gate.get("deploy") or [])
    base = _num((variants.get("fp32") or {}).get("accuracy"))
    head = ("variant", "accuracy", "drop vs fp32", "p (paired)", "size", "gzip size", "p50 ms", "p90 ms",
            "agreement", "gate", "deployed")
    rows = []
    for m in names:
        v, verdict = variants[m], variants[m].get("gate") or {}
        acc = _num(v.get("accuracy"))
        drop = "—" if acc is None or base is None else f"{(base - acc) * 100:+.2f} pp"
        cells = [f'<td class="l">{escape(m)}{" (current)" if m == current else ""}</td>',
                 f"<td>{_fmt(acc, '.2f', 100, ' %')}</td>", f"<td>{drop}</td>",
                 f"<td>{_fmt(verdict.get('p_value'), '.3g')}</td>", f"<td>{_size(v.get('size_bytes'))}</td>",
                 f"<td>{_size(v.get('gzip_bytes'))}</td>",
                 f"<td>{_fmt(v.get('latency_p50_ms'), '.3f')}</td>", f"<td>{_fmt(v.get('latency_p90_ms'), '.3f')}</td>",
                 f"<td>{_fmt(v.get('agreement'), '.2f', 100, ' %')}</td>", f"<td>{_pass_cell(verdict)}</td>",
                 f"<td>{'yes' if m in deploy else 'no'}</td>"]
        rows.append(f'<tr{" class=current" if m == current else ""}>{"".join(cells)}</tr>')
    keras = _num((manifest.get("evaluation") or {}).get("keras_accuracy"))
    if keras is not None:
        source = (manifest.get("train") or {}).get("source") or {}
        name = "SavedModel" if source.get("kind") == "saved_model" else "keras"
        rows.append(f'<tr><td class="l">{name} (reference)</td><td>{_fmt(keras, ".2f", 100, " %")}</td>'
                    + "<td>—</td>" * (len(head) - 2) + "</tr>")
    th = "".join(f'<th{" class=l" if i == 0 else ""}>{escape(h)}</th>' for i, h in enumerate(head))
    return f"<table><tr>{th}</tr>{''.join(rows)}</table>"


def _gate_section(gate: dict[str, Any]) -> str:
    if not gate:
        return "<p>No gate verdict in this run.</p>"
    status = ('<span class="pass">BLESSED</span>' if gate.get("blessed")
              else '<span class="fail">NOT BLESSED: nothing was deployed; devices keep their release</span>')
    reasons = "".join(f"<li>{escape(str(r))}</li>" for r in gate.get("reasons") or [])
    return f"<p>{status}</p><ul>{reasons}</ul>"


def _device_table(devices: list[dict[str, Any]]) -> str:
    if not devices:
        return "<p>No device results in this run (nothing was deployed or benchmarked).</p>"
    head = ("device", "arch", "label", "current variant", "mode", "p50 ms", "p90 ms", "p99 ms", "accuracy",
            "load ms", "peak RSS MB")
    rows = []
    for dev in devices:
        for mode, b in sorted((dev.get("models") or {}).items()) or [("—", {})]:
            lat = b.get("latency_ms") or {}
            label = dev.get("label") or "unknown"
            cells = [dev.get("device"), dev.get("arch"), label, dev.get("current_variant"), mode]
            tds = "".join(f'<td class="l">{escape(str(c if c is not None else "—"))}</td>' for c in cells)
            tds += "".join(f"<td>{_fmt(lat.get(p), '.3f')}</td>" for p in ("p50", "p90", "p99"))
            tds += (f"<td>{_fmt(b.get('accuracy'), '.2f', 100, ' %')}</td>"
                    f"<td>{_fmt(b.get('load_ms'), '.1f')}</td><td>{_fmt(b.get('peak_rss_mb'), '.1f')}</td>")
            rows.append(f"<tr>{tds}</tr>")
    th = "".join(f'<th{" class=l" if i < 5 else ""}>{escape(h)}</th>' for i, h in enumerate(head))
    return f"<table><tr>{th}</tr>{''.join(rows)}</table>"


def render_html(manifest: dict[str, Any], history: list[dict[str, Any]] | None = None) -> str:
    """The whole report page for one manifest (tolerates missing variants, devices and fields)."""
    run_id = str(manifest.get("run_id", "?"))
    variants = {k: v for k, v in (manifest.get("variants") or {}).items() if isinstance(v, dict)}
    names = _ordered_variants(variants)
    dataset = manifest.get("dataset") or {}
    config = manifest.get("config") or {}
    gate = manifest.get("gate") or {}
    counts = dataset.get("counts") or {}
    meta = [
        ("Run", run_id),
        ("Code version", manifest.get("code_version", "?")),
        ("Created", manifest.get("created_at", "?")),
        ("Profile", config.get("profile", "?")),
        ("Dataset", dataset.get("source", "?")),
        ("Classes", ", ".join(map(str, dataset.get("classes") or [])) or "?"),
        ("Split sizes", ", ".join(f"{k} {v}" for k, v in counts.items()) or "?"),
        ("Gate", f"max drop {gate.get('max_accuracy_drop_pp', '?')} pp vs fp32; deploy "
                 f"{', '.join(gate.get('deploy') or []) or 'none'}; current {gate.get('current') or 'none'}"),
    ]
    dl = "".join(f"<dt>{escape(k)}</dt><dd>{escape(str(v))}</dd>" for k, v in meta)
    devices = [d for d in manifest.get("devices") or [] if isinstance(d, dict)]
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>EdgeOps run {escape(run_id)}</title>
<style>{_CSS}</style></head><body>
<h1>EdgeOps run {escape(run_id)}</h1>
<dl>{dl}</dl>
<h2>Gate</h2>
{_gate_section(gate)}
<h2>Variants</h2>
<div class="note">Latencies in this section were measured on the build host (x86), not on a device.</div>
{_charts(variants, names)}
{_variants_table(manifest, names)}
<h2>Devices</h2>
<div class="note">Timings labelled <b>host</b> (x86 simulated device) or <b>emulated</b> (qemu) are
not Raspberry Pi figures and must not be read as device speedups; only <b>native</b> rows were measured
on a Pi.</div>
{_device_table(devices)}
{history_section(history or [])}
</body></html>
"""


def run(store: ArtifactStore, run_id: str, manifest: dict[str, Any],
        history: list[dict[str, Any]] | None = None) -> Artifact:
    """Render the report and upload it to ``runs/<run_id>/report/index.html``."""
    page = render_html(manifest, history).encode("utf-8")
    return store.put_bytes(keys.report(run_id), page, name="report", content_type=CONTENT_TYPE)
