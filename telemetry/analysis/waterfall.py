"""Terminal rendering: a trace as a waterfall, and the latency analysis as tables.

The waterfall has one row per span, indented under its parent.
Columns: start offset from the trace's first span, duration, self time, the time the span spends
on the critical path, a timeline bar (``█`` where the span is on the critical path, ``░`` elsewhere),
then service and span name. Critical-path spans are marked ``*``; failed spans ``✗`` with their
status message; span links to other traces (a status poll's link to its operation) are named.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TextIO

from telemetry.analysis.latency import LatencyAnalysis, Section, critical_path, self_times
from telemetry.analysis.traces import Span, Trace

_BOLD, _RED, _RESET = "\033[1m", "\033[31m", "\033[0m"


def _rows(trace: Trace) -> Iterator[tuple[Span, int]]:
    """(span, depth) depth-first, children in start order."""
    stack = [(root, 0) for root in reversed(trace.roots)]
    seen: set[str] = set()
    while stack:
        span, depth = stack.pop()
        if span.span_id in seen:
            continue
        seen.add(span.span_id)
        yield span, depth
        stack.extend((child, depth + 1) for child in reversed(trace.children.get(span.span_id, ())))


def _bar(span: Span, sections: list[Section], origin: int, step: float, width: int) -> str:
    cells = []
    for i in range(width):
        lo, hi = origin + i * step, origin + (i + 1) * step
        # a zero-length span still gets the one cell it falls in
        if span.start_ns >= hi or (span.end_ns <= lo and not span.start_ns == span.end_ns == lo):
            cells.append(" ")
            continue
        on_path = any(s.start_ns < hi and s.end_ns > lo for s in sections)
        cells.append("█" if on_path else "░")
    return "".join(cells)


def _ms(ns: int) -> str:
    return f"{ns / 1e6:,.3f}"


def render(trace: Trace, out: TextIO, *, width: int = 32, color: bool = False) -> None:
    selfs = self_times(trace)
    sections: dict[str, list[Section]] = {}
    for section in critical_path(trace):
        sections.setdefault(section.span_id, []).append(section)
    origin, total = trace.start_ns, max(trace.end_ns - trace.start_ns, 1)
    step = total / width
    errors = sum(span.error for span in trace.spans)
    out.write(f"Trace {trace.trace_id}  {len(trace.spans)} spans  {len(trace.services)} services  "
              f"{_ms(trace.end_ns - trace.start_ns)} ms  {errors} error{'s' if errors != 1 else ''}\n")
    out.write(f"{'start ms':>12} {'duration ms':>12} {'self ms':>11} {'critical ms':>11}  "
              f"{'timeline':<{width}}  span  (* on the critical path, ✗ failed)\n")
    for span, depth in _rows(trace):
        on_path = sections.get(span.span_id, [])
        critical_ns = sum(s.end_ns - s.start_ns for s in on_path)
        mark = "*" if critical_ns else " "
        name = f"{'  ' * depth}{mark} {span.service}  {span.name}"
        if span.parent_id and span.parent_id not in trace.by_id:
            name += f"  (parent {span.parent_id} not in the trace)"
        if span.error:
            name += f"  ✗ {span.status_message}".rstrip()
        for link in span.links:
            name += f"  → linked trace {link.trace_id}" if link.trace_id != trace.trace_id else ""
        line = (f"{_ms(span.start_ns - origin):>12} {_ms(span.duration_ns):>12} {_ms(selfs[span.span_id]):>11} "
                f"{_ms(critical_ns) if critical_ns else '':>11}  {_bar(span, on_path, origin, step, width)}  {name}")
        if color and (span.error or critical_ns):
            line = f"{_RED if span.error else ''}{_BOLD if critical_ns else ''}{line}{_RESET}"
        out.write(line + "\n")


def _cell(row: dict[str, object], key: str) -> str:
    value = row.get(key)
    return "" if value is None else f"{value:,.3f}" if isinstance(value, float) else str(value)


def render_latency(analysis: LatencyAnalysis, out: TextIO) -> None:
    result = analysis.to_dict()
    out.write(f"{result['traces']} traces ({result['operations']} operations, {result['polls']} status polls), "
              f"{result['spans']} spans\n")
    if not result["traces"]:
        return
    columns = ("count", "errors", "p50_ms", "p95_ms", "p99_ms", "self_p50_ms", "self_p95_ms")
    hops = [f"{row['service']}  {row['span']}" for row in result["hops"]]
    width = max(len(hop) for hop in hops)
    out.write(f"\n{'hop (service  span)':<{width}} " + " ".join(f"{c:>11}" for c in columns) + "  critical path\n")
    for hop, row in zip(hops, result["hops"], strict=True):
        out.write(f"{hop:<{width}} " + " ".join(f"{_cell(row, c):>11}" for c in columns)
                  + f"  {row['critical_path_share']:>7.1%}\n")
    if e2e := result.get("end_to_end"):
        out.write(f"\nend to end (submission -> client saw the result): p50 {e2e['p50_ms']:,.3f} ms  "
                  f"p95 {e2e['p95_ms']:,.3f} ms  p99 {e2e['p99_ms']:,.3f} ms  mean {e2e['mean_ms']:,.3f} ms\n")
        columns = ("count", "p50_ms", "p95_ms", "p99_ms", "mean_ms")
        out.write(f"{'phase':<20} " + " ".join(f"{c:>11}" for c in columns) + "    share  what\n")
        for row in result["phases"]:
            share = f"{row['share']:>7.1%}" if "share" in row else f"{'':>7}"
            out.write(f"{row['phase']:<20} " + " ".join(f"{_cell(row, c):>11}" for c in columns)
                      + f"  {share}  {row['description']}\n")
    if usage := result.get("code_sessions"):
        out.write(f"\ncode sessions ({usage['executions']} executions, the sessions' cgroups): CPU p50 "
                  f"{usage['cpu_p50_ms']:,.3f} ms  p95 {usage['cpu_p95_ms']:,.3f} ms  ({usage['cpu_of_wall']:.0%} of "
                  f"their wall time); held back by the CPU quota: {usage['throttled_executions']}; processes killed "
                  f"at the memory limit: {usage['oom_kills']} (in {usage['executions_with_oom_kills']} executions)\n")
