"""The latency analysis as one self-contained HTML page: inline SVG and CSS, no script, no network.

Sections: the end-to-end summary, the phase breakdown (a stacked bar of the mean phases and a
table), per-hop latency (p50 bar, p95 whisker, p99 tick, on a log scale) with a table, and the
distribution of code-execution time (the interpreter-run spans, and beside it the data plane's own
figure where the spans carry it: whole milliseconds, so runs under 1 ms read 0 there).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

from telemetry.analysis.latency import LatencyAnalysis, percentile

PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948",
           "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac", "#86bcb6", "#d37295")
_CSS = """
body{font:14px system-ui,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:22px}h2{font-size:18px;margin-top:32px}
table{border-collapse:collapse;font-size:12px}td,th{padding:3px 8px;border-bottom:1px solid #ddd;text-align:right}
td.l,th.l{text-align:left}svg{display:block;margin:8px 0}svg text{font:11px system-ui,sans-serif}
.muted{color:#777}.err{color:#c00}
"""


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:,.3f}"


def _table(rows: list[dict[str, Any]], columns: list[tuple[str, str]], left: int = 1) -> str:
    head = "".join(f"<th{' class=l' if i < left else ''}>{escape(title)}</th>" for i, (_, title) in enumerate(columns))
    body = []
    for row in rows:
        cells = []
        for i, (key, _) in enumerate(columns):
            value = row.get(key)
            if key.endswith("share") and isinstance(value, float):
                text = f"{value:.1%}"
            else:
                text = _num(value) if isinstance(value, float) else escape(str(value if value is not None else ""))
            cells.append(f"<td{' class=l' if i < left else ''}>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _phase_bar(phases: list[dict[str, Any]], width: int = 1000) -> str:
    present = [p for p in phases if p.get("mean_ms", 0) > 0]
    total = sum(p["mean_ms"] for p in present)
    if not total:
        return "<p class=muted>No phase took measurable time.</p>"
    parts, legend, x = [], [], 0.0
    for i, phase in enumerate(present):
        w = phase["mean_ms"] / total * width
        color = PALETTE[i % len(PALETTE)]
        title = f"{phase['phase']}: mean {phase['mean_ms']:,.3f} ms ({phase['mean_ms'] / total:.1%})"
        parts.append(f'<rect x="{x:.2f}" y="0" width="{w:.2f}" height="28" fill="{color}">'
                     f"<title>{escape(title)}</title></rect>")
        legend.append(f'<span style="display:inline-block;margin-right:14px"><span style="display:inline-block;'
                      f'width:10px;height:10px;background:{color}"></span> {escape(title)}</span>')
        x += w
    return (f'<svg width="{width}" height="30" role="img" aria-label="phase breakdown">{"".join(parts)}</svg>'
            f'<div style="margin-top:6px;font-size:12px">{"".join(legend)}</div>')


def _log_x(value: float, low: float, high: float, width: float) -> float:
    value = min(max(value, low), high)
    return (math.log10(value) - math.log10(low)) / (math.log10(high) - math.log10(low)) * width


def _hop_chart(hops: list[dict[str, Any]]) -> str:
    if not hops:
        return ""
    label_w, plot_w, row_h = 430, 560, 18
    low = 10 ** math.floor(math.log10(max(min(h["p50_ms"] for h in hops), 0.001)))
    high = 10 ** math.ceil(math.log10(max(max(h["p99_ms"] for h in hops), low * 10)))
    height = row_h * len(hops) + 30
    out = [f'<svg width="{label_w + plot_w + 10}" height="{height}" role="img" aria-label="latency per hop">']
    decade = low
    while decade <= high:
        x = label_w + _log_x(decade, low, high, plot_w)
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="0" y2="{height - 20}" stroke="#ddd"/>'
                   f'<text x="{x:.1f}" y="{height - 6}" text-anchor="middle">{decade:g} ms</text>')
        decade *= 10
    for i, hop in enumerate(hops):
        y = i * row_h
        p50, p95, p99 = (label_w + _log_x(hop[k], low, high, plot_w) for k in ("p50_ms", "p95_ms", "p99_ms"))
        color = "#e15759" if hop["errors"] else "#4e79a7"
        label = f"{hop['service']}  {hop['span']}"
        tip = f"{label}: p50 {hop['p50_ms']:,.3f} / p95 {hop['p95_ms']:,.3f} / p99 {hop['p99_ms']:,.3f} ms, " \
              f"n={hop['count']}, errors={hop['errors']}"
        out.append(f'<g><title>{escape(tip)}</title>'
                   f'<text x="{label_w - 6}" y="{y + 13}" text-anchor="end">{escape(label[:70])}</text>'
                   f'<rect x="{label_w}" y="{y + 3}" width="{max(p50 - label_w, 1):.1f}" height="{row_h - 6}" '
                   f'fill="{color}"/><line x1="{p50:.1f}" x2="{p95:.1f}" y1="{y + 9}" y2="{y + 9}" stroke="#333"/>'
                   f'<line x1="{p99:.1f}" x2="{p99:.1f}" y1="{y + 4}" y2="{y + 14}" stroke="#333"/></g>')
    out.append("</svg>")
    return "".join(out)


def histogram(values: list[float], bins: int = 24) -> list[tuple[float, float, int]]:
    """(low, high, count) bins of equal width spanning the values."""
    low, high = min(values), max(values)
    if high == low:
        return [(low, high, len(values))]
    step = (high - low) / bins
    counts = [0] * bins
    for value in values:
        counts[min(int((value - low) / step), bins - 1)] += 1
    return [(low + i * step, low + (i + 1) * step, n) for i, n in enumerate(counts)]


def _histogram_chart(values: list[float], color: str, label: str) -> str:
    if not values:
        return f"<p class=muted>No {escape(label)} in these traces.</p>"
    bins = histogram(values)
    width, height, top = 700, 160, max(n for _, _, n in bins)
    bar_w = width / len(bins)
    out = [f'<svg width="{width + 20}" height="{height + 36}" role="img" aria-label="{escape(label)}">']
    for i, (lo, hi, n) in enumerate(bins):
        h = n / top * height
        out.append(f'<rect x="{i * bar_w:.1f}" y="{height - h:.1f}" width="{max(bar_w - 1, 1):.1f}" height="{h:.1f}" '
                   f'fill="{color}"><title>{lo:,.1f}–{hi:,.1f} ms: {n}</title></rect>')
    ordered = sorted(values)
    out.append(f'<text x="0" y="{height + 14}">{bins[0][0]:,.1f} ms</text>'
               f'<text x="{width}" y="{height + 14}" text-anchor="end">{bins[-1][1]:,.1f} ms</text>'
               f'<text x="0" y="{height + 30}">{escape(label)}: n={len(values)}, '
               f'p50 {percentile(ordered, 50):,.3f} ms, '
               f'p95 {percentile(ordered, 95):,.3f} ms, p99 {percentile(ordered, 99):,.3f} ms, '
               f'max {ordered[-1]:,.3f} ms</text></svg>')
    return "".join(out)


def _code_usage(usage: dict[str, Any] | None) -> str:
    if not usage:
        return "<p class=muted>No execution carried its session's cgroup usage.</p>"
    return (f"<p>What the {usage['executions']:,} executions used of their sessions' cgroups: CPU p50 "
            f"<b>{usage['cpu_p50_ms']:,.3f} ms</b>, p95 {usage['cpu_p95_ms']:,.3f} ms, "
            f"p99 {usage['cpu_p99_ms']:,.3f} ms ({usage['cpu_of_wall']:.0%} of their wall time); held back by the "
            f"CPU quota: {usage['throttled_executions']:,}; processes killed at the memory limit: "
            f"{usage['oom_kills']:,} (in {usage['executions_with_oom_kills']:,} executions).</p>")


def render_report(analysis: LatencyAnalysis, source: str = "") -> str:
    result = analysis.to_dict()
    e2e = result.get("end_to_end")
    summary = (f"{result['traces']} traces ({result['operations']} operations, {result['polls']} status polls), "
               f"{result['spans']} spans from <code>{escape(source)}</code>, "
               f"generated {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC.")
    if e2e:
        summary += (f"<br>End to end (submission → the client saw the result): p50 <b>{e2e['p50_ms']:,.3f} ms</b>, "
                    f"p95 {e2e['p95_ms']:,.3f} ms, p99 {e2e['p99_ms']:,.3f} ms, mean {e2e['mean_ms']:,.3f} ms.")
    phase_cols = [("phase", "phase"), ("description", "what"), ("count", "n"), ("p50_ms", "p50 ms"),
                  ("p95_ms", "p95 ms"), ("p99_ms", "p99 ms"), ("mean_ms", "mean ms"), ("share", "share")]
    hop_cols = [("service", "service"), ("span", "span"), ("count", "n"), ("errors", "errors"), ("p50_ms", "p50 ms"),
                ("p95_ms", "p95 ms"), ("p99_ms", "p99 ms"), ("self_p50_ms", "self p50"),
                ("self_p95_ms", "self p95"), ("critical_path_share", "critical path share")]
    sections = [
        f"<h1>Latency of the completion path</h1><p>{summary}</p>",
        "<h2>Phases of the end-to-end time</h2>",
        _phase_bar(result["phases"]) if e2e else "<p class=muted>No operation traces.</p>",
        _table(result["phases"], phase_cols, left=2),
        "<h2>Latency per hop</h2><p class=muted>bar: p50; whisker to p95; tick: p99; log scale; red: hops with "
        "errors. Hops in the order they run.</p>",
        _hop_chart(result["hops"]),
        _table(result["hops"], hop_cols, left=2),
        "<h2>Code execution time</h2>",
        _histogram_chart(analysis.execution_durations(), "#59a14f", "interpreter-run span duration"),
        _histogram_chart(list(analysis.interpreter_ms), "#76b7b2",
                         "time the data plane reported (executionTimeInMilliseconds, whole ms)"),
        _code_usage(result.get("code_sessions")),
    ]
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>callstack latency report</title>"
            f"<style>{_CSS}</style></head><body>{''.join(sections)}</body></html>\n")


def write_report(analysis: LatencyAnalysis, path: Path, source: str = "") -> None:
    path.write_text(render_report(analysis, source), encoding="utf-8")
