"""Hand-made traces with known timings (milliseconds from a fixed origin), and files of them."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

from telemetry import conventions as c
from telemetry.analysis.traces import Link, Span, Trace, to_otlp

ORIGIN_NS = 1_790_000_000_000_000_000
MS = 1_000_000
_ids = itertools.count(1)


class TraceBuilder:
    def __init__(self, origin_ns: int = ORIGIN_NS) -> None:
        self.trace_id = f"{next(_ids):032x}"
        self.origin_ns = origin_ns
        self.spans: list[Span] = []

    def span(self, service: str, name: str, start_ms: float, end_ms: float, parent: Span | None = None,
             kind: str = "INTERNAL", error: bool = False, links: list[Span] | None = None,
             **attributes: Any) -> Span:
        span = Span(
            trace_id=self.trace_id, span_id=f"{next(_ids):016x}", parent_id=parent.span_id if parent else "",
            name=name, service=service, kind=kind,
            start_ns=self.origin_ns + round(start_ms * MS), end_ns=self.origin_ns + round(end_ms * MS),
            error=error, status_message="boom" if error else "",
            attributes=dict(attributes), links=[Link(s.trace_id, s.span_id, {}) for s in links or ()],
            resource={"service.name": service, "service.namespace": c.SERVICE_NAMESPACE}, scope="tests",
        )
        self.spans.append(span)
        return span

    def server(self, service: str, method: str, route: str, start_ms: float, end_ms: float, parent: Span,
               **attributes: Any) -> Span:
        return self.span(service, f"{method} {route}", start_ms, end_ms, parent, "SERVER",
                         **{"http.route": route, **attributes})

    def trace(self) -> Trace:
        return Trace(self.trace_id, self.spans)


def chain_trace(gatekeeper: bool = True, execution_ms: float = 520, origin_ns: int = ORIGIN_NS,
                exec_error: bool = False) -> TraceBuilder:
    """One completion through the whole chain; timings in the comments of tests/analysis/test_latency.py.

    ``execution_ms`` stretches the interpreter run and shifts everything after it.
    """
    b = TraceBuilder(origin_ns)
    x = execution_ms - 520  # shift of everything after the execution
    route = c.ROUTE_ASYNC_COMPLETIONS
    root = b.span(c.PORTAL, c.SPAN_PORTAL_SUBMIT, 0, 1000 + x)
    post = b.span(c.PORTAL, "POST", 1, 60, root, "CLIENT")
    core = b.server(c.CORE_API, "POST", route, 5, 55, post)
    upstream = core
    if gatekeeper:
        upstream = b.server(c.GATEKEEPER_API, "POST", route, 8, 50, core)
        b.span(c.GATEKEEPER_API, c.SPAN_GATEKEEPER_CHECK, 9, 14, upstream)
    orch = b.server(c.ORCHESTRATION_API, "POST", route, 15, 48, upstream)
    build = b.span(c.ORCHESTRATION_API, c.SPAN_ORCHESTRATION_BUILD, 16, 30, orch)
    b.server(c.CONTEXT_API, "POST", c.ROUTE_CODE_SESSIONS, 18, 26, build)
    b.server(c.STATE_API, "POST", c.ROUTE_OPERATION, 31, 34, orch)
    lang = b.server(c.LANGCHAIN_API, "POST", route, 35, 45, orch, **{"http.response.status_code": 202})
    b.server(c.STATE_API, "PUT", c.ROUTE_OPERATION, 36, 38, lang, **{c.ATTR_OPERATION_STATUS: "InProgress"})
    flow = b.span(c.LANGCHAIN_API, c.SPAN_LANGCHAIN_WORKFLOW, 40, 900 + x, lang)
    b.span(c.LANGCHAIN_API, "chat local-deterministic", 41, 100, flow, "CLIENT")
    tool = b.span(c.LANGCHAIN_API, c.SPAN_LANGCHAIN_TOOL_CALL, 110, 700 + x, flow)
    ctx = b.server(c.CONTEXT_API, "POST", c.ROUTE_EXECUTE_CODE, 112, 690 + x, tool)
    provider = b.server(c.DYNAMIC_SESSIONS, "POST", "/executions", 115, 685 + x, ctx)
    b.span(c.DYNAMIC_SESSIONS, c.SPAN_CODE_SESSION_ACQUIRE, 116, 150, provider)
    b.span(c.DYNAMIC_SESSIONS, c.SPAN_CODE_EXECUTE, 160, 680 + x, provider, error=exec_error,
           **{c.ATTR_CODE_EXECUTION_MS: round(execution_ms - 20)})
    write = b.span(c.LANGCHAIN_API, c.SPAN_LANGCHAIN_WRITE_RESULT, 800 + x, 880 + x, flow)
    b.server(c.STATE_API, "POST", c.ROUTE_OPERATION_RESULT, 805 + x, 830 + x, write)
    b.server(c.STATE_API, "PUT", c.ROUTE_OPERATION, 835 + x, 870 + x, write, **{c.ATTR_OPERATION_STATUS: "Completed"})
    b.span(c.PORTAL, c.SPAN_PORTAL_WAIT, 60, 995 + x, root)
    return b


def poll_trace(operation: TraceBuilder, at_ms: float) -> TraceBuilder:
    """A status poll: its own trace, linked to the operation's root."""
    b = TraceBuilder(operation.origin_ns)
    poll = b.span(c.PORTAL, c.SPAN_PORTAL_POLL, at_ms, at_ms + 4, links=[operation.spans[0]])
    get = b.span(c.PORTAL, "GET", at_ms + 0.5, at_ms + 3.5, poll, "CLIENT")
    b.server(c.CORE_API, "GET", c.ROUTE_COMPLETION_STATUS, at_ms + 1, at_ms + 3, get)
    return b


def write_jsonl(path: Path, spans: list[Span], batch: int = 3) -> Path:
    """OTLP/JSON lines as the services write them: batches in end order, one trace spread over lines."""
    ordered = sorted(spans, key=lambda s: s.end_ns)
    with path.open("a") as handle:
        for i in range(0, len(ordered), batch):
            handle.write(json.dumps(to_otlp(ordered[i:i + batch]), separators=(",", ":")) + "\n")
    return path
