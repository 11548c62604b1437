"""What every HTML report shares: the page CSS, number/size formatting, bar charts as inline PNGs, and the
device-benchmark table (nightly report, its history trend, and the rollout report).

Nothing here reads the store; charts import matplotlib (Agg) lazily. All text goes through ``html.escape``.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Iterable, Mapping
from html import escape
from typing import Any

CONTENT_TYPE = "text/html; charset=utf-8"

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem;color:#222;max-width:1200px}
h1{font-size:1.5rem;margin-bottom:.2rem} h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd}
h3{font-size:1rem;margin-top:1.2rem}
dl{display:grid;grid-template-columns:max-content auto;gap:.2rem 1rem} dt{font-weight:600} dd{margin:0}
table{border-collapse:collapse;font-size:.9rem}
th,td{border:1px solid #ddd;padding:.3rem .6rem;text-align:right}
th{background:#f4f4f4} td.l,th.l{text-align:left} tr.current{background:#eef7ee}
.pass{color:#176f2c;font-weight:600} .fail{color:#b00020;font-weight:600} .warn{color:#a15c00;font-weight:600}
.note{background:#fff8e1;border-left:4px solid #f0b400;padding:.5rem .8rem;margin:.8rem 0}
.charts{display:flex;flex-wrap:wrap;gap:1rem} .charts img{max-width:380px;border:1px solid #eee}
figure{margin:0} figcaption{font-size:.8rem;color:#555;text-align:center}
"""

LABEL_NOTE = ("<div class=\"note\">Timings labelled <b>host</b> (x86 simulated device) or <b>emulated</b> (qemu) are "
              "not Raspberry Pi figures and must not be read as device speedups; only <b>native</b> rows were "
              "measured on a Pi.</div>")


def num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        return None
    return float(value)


def fmt(value: Any, spec: str = ".2f", scale: float = 1.0, suffix: str = "") -> str:
    v = num(value)
    return "—" if v is None else f"{v * scale:{spec}}{suffix}"


def size(value: Any) -> str:
    v = num(value)
    if v is None:
        return "—"
    return f"{v / 2**20:.2f} MB" if v >= 2**20 else f"{v / 2**10:.1f} KB"


def pass_fail(passed: bool | None, yes: str = "pass", no: str = "fail") -> str:
    if passed is None:
        return "—"
    return f'<span class="pass">{escape(yes)}</span>' if passed else f'<span class="fail">{escape(no)}</span>'


def reasons_list(reasons: Iterable[Any]) -> str:
    items = "".join(f"<li>{escape(str(r))}</li>" for r in reasons)
    return f"<ul>{items}</ul>" if items else ""


def meta_list(meta: Iterable[tuple[str, Any]]) -> str:
    return "<dl>" + "".join(f"<dt>{escape(k)}</dt><dd>{escape(str(v))}</dd>" for k, v in meta) + "</dl>"


def table(head: Iterable[str], rows: Iterable[str], left: int = 1) -> str:
    """A table from pre-rendered ``<tr>`` rows; the first ``left`` header cells are left-aligned."""
    th = "".join(f'<th{" class=l" if i < left else ""}>{escape(h)}</th>' for i, h in enumerate(head))
    return f"<table><tr>{th}</tr>{''.join(rows)}</table>"


def chart(title: str, names: list[str], values: list[float | None], ylabel: str,
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


def figures(charts: list[tuple[str, str]]) -> str:
    imgs = "".join(f'<figure><img alt="{escape(t)}" src="data:image/png;base64,{png}">'
                   f"<figcaption>{escape(t)}</figcaption></figure>" for t, png in charts)
    return f'<div class="charts">{imgs}</div>'


DEVICE_HEAD = ("device", "arch", "label", "current variant", "mode", "delegate × threads", "p50 ms", "p90 ms",
               "p95 ms", "p99 ms", "accuracy", "load ms", "peak RSS MB")


def delegate_cell(bench: dict[str, Any]) -> str | None:
    """``xnnpack × 4``, ``libedgetpu.so.1 × 1 (0 partitions: CPU ran it)``; None for records from before."""
    delegate = bench.get("delegate")
    if not isinstance(delegate, dict):
        return None
    text = f"{delegate.get('name')} × {bench.get('threads', '?')}"
    if not delegate.get("builtin") and delegate.get("partitions") == 0:
        text += " (0 partitions: CPU ran it)"
    return text


def device_table(devices: Iterable[Mapping[str, Any]], arch: bool = True) -> str:
    """On-device benchmark figures, one row per (device, benchmarked variant).

    Each device is ``{device, arch, label, current_variant, models: {variant: ModelBench as a dict}}`` (a
    BenchmarkResult's JSON form); the current variant's row is highlighted. Empty input gives ""."""
    rows = []
    for dev in devices:
        for mode, b in sorted((dev.get("models") or {}).items()) or [("—", {})]:
            lat = b.get("latency_ms") or {}
            cells = [dev.get("device"), *([dev.get("arch")] if arch else []), dev.get("label") or "unknown",
                     dev.get("current_variant"), mode, delegate_cell(b)]
            tds = "".join(f'<td class="l">{escape(str(c if c is not None else "—"))}</td>' for c in cells)
            tds += "".join(f"<td>{fmt(lat.get(p), '.3f')}</td>" for p in ("p50", "p90", "p95", "p99"))
            tds += (f"<td>{fmt(b.get('accuracy'), '.2f', 100, ' %')}</td>"
                    f"<td>{fmt(b.get('load_ms'), '.1f')}</td><td>{fmt(b.get('peak_rss_mb'), '.1f')}</td>")
            current = mode == dev.get("current_variant")
            rows.append(f"<tr{' class=current' if current else ''}>{tds}</tr>")
    head = DEVICE_HEAD if arch else tuple(h for h in DEVICE_HEAD if h != "arch")
    return table(head, rows, left=6 if arch else 5) if rows else ""


def page(title: str, body: str) -> str:
    """A whole self-contained HTML page."""
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>\n'
            f"<style>{CSS}</style></head><body>\n{body}\n</body></html>\n")
