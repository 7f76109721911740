"""Traces as JSON for a page: one trace's waterfall, an operation's summary line, a latency report.

Only trace data leaves here: service, span name, kind, times, error status and the failed hop, never
attributes (which is where captured prompt text would be). The figures come from the same functions
as ``callstack trace`` and ``callstack latency`` (self time, critical path, phases, LatencyAnalysis).
"""

from __future__ import annotations

from typing import Any

from telemetry import conventions as c
from telemetry.analysis.latency import LatencyAnalysis, critical_path, self_times
from telemetry.analysis.phases import PHASES, is_execution, is_poll_trace, trace_phases
from telemetry.analysis.report import histogram
from telemetry.analysis.trace_index import TraceWithLinks
from telemetry.analysis.traces import Span, Trace
from telemetry.analysis.waterfall import _rows as depth_first

MAX_MESSAGE = 300


def _ms(ns: int) -> float:
    return round(ns / 1e6, 3)


def _failed_hop(trace: Trace) -> str | None:
    for span in trace.spans:
        hop = span.attributes.get(c.ATTR_FAILED_HOP)
        if isinstance(hop, str) and hop:
            return c.service_name_now(hop)  # earlier versions named the hop "context-api"
    failed = [s for s in trace.spans if s.error]
    if not failed:
        return None
    # the deepest failed span is where the failure started
    return max(failed, key=lambda s: sum(1 for _ in trace.ancestors(s))).service


def _first_attribute(trace: Trace, key: str) -> str | None:
    return next((v for s in trace.spans if isinstance(v := s.attributes.get(key), str) and v), None)


def summary(trace: Trace) -> dict[str, Any]:
    """One line of the operations list."""
    phases = trace_phases(trace)
    failed_hop = _failed_hop(trace)
    statuses = [v for s in trace.spans if isinstance(v := s.attributes.get(c.ATTR_OPERATION_STATUS), str)]
    if "Failed" in statuses or failed_hop:
        status = "Failed"
    elif "Completed" in statuses:
        status = "Completed"
    else:
        status = "Completed" if phases and phases.get("result_write") is not None else "Unknown"
    end_to_end = phases["end_to_end"] if phases else _ms(trace.end_ns - trace.start_ns)
    return {
        "trace_id": trace.trace_id,
        "start_ns": trace.start_ns,
        "root": trace.root.name,
        "agent": _first_attribute(trace, c.ATTR_AGENT_NAME),
        "operation_id": _first_attribute(trace, c.ATTR_OPERATION_ID),
        "status": status,
        "end_to_end_ms": round(end_to_end, 3) if end_to_end is not None else None,
        "failed_hop": failed_hop,
        "spans": len(trace.spans),
        "is_operation": phases is not None,
    }


def _span_row(span: Span, depth: int, origin: int, selfs: dict[str, int], critical: dict[str, list[tuple[int, int]]],
              trace: Trace) -> dict[str, Any]:
    sections = critical.get(span.span_id, [])
    row: dict[str, Any] = {
        "span_id": span.span_id,
        "parent_id": span.parent_id if span.parent_id in trace.by_id else "",
        "depth": depth,
        "service": span.service,
        "name": span.name,
        "kind": span.kind,
        "start_ms": _ms(span.start_ns - origin),
        "duration_ms": _ms(span.duration_ns),
        "self_ms": _ms(selfs[span.span_id]),
        "critical_ms": _ms(sum(e - s for s, e in sections)),
        "critical": [[_ms(s - origin), _ms(e - origin)] for s, e in sections],
        "error": span.error,
        "execution": is_execution(span.service, span.name),
    }
    if span.error:
        row["error_message"] = span.status_message[:MAX_MESSAGE]
    return row


def waterfall(found: TraceWithLinks) -> dict[str, Any]:
    trace = found.trace
    selfs = self_times(trace)
    critical: dict[str, list[tuple[int, int]]] = {}
    for section in critical_path(trace):
        critical.setdefault(section.span_id, []).append((section.start_ns, section.end_ns))
    origin = trace.start_ns
    phases = trace_phases(trace)
    linked = {}
    for span, _ in found.linked_from:
        entry = linked.setdefault(span.trace_id, {"trace_id": span.trace_id, "name": span.name,
                                                   "start_ms": _ms(span.start_ns - origin),
                                                   "duration_ms": _ms(span.duration_ns), "error": span.error})
        entry["error"] = entry["error"] or span.error
    return {
        "trace_id": trace.trace_id,
        "start_ns": origin,
        "duration_ms": _ms(trace.end_ns - origin),
        "services": trace.services,
        "summary": summary(trace),
        "is_poll": is_poll_trace(trace),
        "links": sorted({k.trace_id for s in trace.spans for k in s.links if k.trace_id != trace.trace_id}),
        "spans": [_span_row(span, depth, origin, selfs, critical, trace) for span, depth in depth_first(trace)],
        "phases": None if phases is None else [
            {"phase": name, "description": description, "ms": phases.get(name)} for name, description in PHASES
        ] + [{"phase": "end_to_end", "description": "submission until the client saw the result",
              "ms": phases.get("end_to_end")}],
        "linked_traces": list(linked.values()),
    }


def latency_report(analysis: LatencyAnalysis, bins: int = 24) -> dict[str, Any]:
    """``callstack latency --json``'s figures plus the execution-time histogram of the report."""
    result = analysis.to_dict()
    durations = analysis.execution_durations()
    result["execution_histogram"] = [
        {"low_ms": round(lo, 3), "high_ms": round(hi, 3), "count": n} for lo, hi, n in histogram(durations, bins)
    ] if durations else []
    return result
