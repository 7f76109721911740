"""One span model for every trace source, OTLP/JSON decoding and encoding, and grouping by trace.

Sources (files, Jaeger's APIs) are read in ``telemetry.analysis.trace_sources``; Jaeger's v1 JSON is in
``telemetry.analysis.jaeger_json``. All of them produce :class:`Span` objects; :class:`TraceAssembler` groups
a stream of spans, arriving in any order and spread over many batches, into whole :class:`Trace`s.

A span's ``service`` is today's service.name: traces of earlier versions, which named the hops by their
deployment names (``core-api``), read as if recorded now (``CoreAPI``); ``resource`` keeps what was recorded.
"""

from __future__ import annotations

import base64
import binascii
import heapq
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from telemetry import conventions as c

KINDS = ("UNSPECIFIED", "INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER")
_STATUS_ERROR = 2
_ZERO_IDS = frozenset({"0" * 16, "0" * 32})


class TraceSourceError(Exception):
    """A trace source that cannot be read: the message says which and why, for the user."""


@dataclass(slots=True)
class Event:
    time_ns: int
    name: str
    attributes: dict[str, Any]


@dataclass(slots=True)
class Link:
    trace_id: str
    span_id: str
    attributes: dict[str, Any]


@dataclass(slots=True)
class Span:
    trace_id: str
    span_id: str
    parent_id: str  # "" for a root
    name: str
    service: str
    kind: str  # one of KINDS
    start_ns: int
    end_ns: int
    error: bool = False
    status_message: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)
    resource: dict[str, Any] = field(default_factory=dict)  # shared by the spans of one resource
    scope: str = ""

    @property
    def duration_ns(self) -> int:
        return self.end_ns - self.start_ns

    @property
    def hop(self) -> tuple[str, str]:
        return self.service, self.name


class Trace:
    """The spans of one trace id. Spans whose parent is not in the trace are treated as roots."""

    def __init__(self, trace_id: str, spans: Iterable[Span]) -> None:
        self.trace_id = trace_id
        self.spans = sorted(spans, key=lambda s: (s.start_ns, -s.end_ns))

    @cached_property
    def by_id(self) -> dict[str, Span]:
        return {span.span_id: span for span in self.spans}

    @cached_property
    def children(self) -> dict[str, list[Span]]:
        """Children of each span id, in start order (as ``spans`` is)."""
        tree: dict[str, list[Span]] = {}
        for span in self.spans:
            if span.parent_id and span.parent_id in self.by_id:
                tree.setdefault(span.parent_id, []).append(span)
        return tree

    @cached_property
    def roots(self) -> list[Span]:
        return [s for s in self.spans if not s.parent_id or s.parent_id not in self.by_id]

    @cached_property
    def root(self) -> Span:
        """The main root: a true root (no parent id) before an orphan, then the earliest, then the longest."""
        return min(self.roots, key=lambda s: (bool(s.parent_id), s.start_ns, -s.end_ns))

    @property
    def start_ns(self) -> int:
        return self.spans[0].start_ns

    @property
    def end_ns(self) -> int:
        return max(span.end_ns for span in self.spans)

    def parent(self, span: Span) -> Span | None:
        return self.by_id.get(span.parent_id) if span.parent_id else None

    def ancestors(self, span: Span) -> Iterator[Span]:
        seen = {span.span_id}
        parent = self.parent(span)
        while parent is not None and parent.span_id not in seen:  # guard against reference cycles
            seen.add(parent.span_id)
            yield parent
            parent = self.parent(parent)

    def descendants(self, span: Span) -> Iterator[Span]:
        stack = list(self.children.get(span.span_id, ()))
        while stack:
            child = stack.pop()
            yield child
            stack.extend(self.children.get(child.span_id, ()))

    @property
    def services(self) -> list[str]:
        return sorted({span.service for span in self.spans})


# --- identifiers -------------------------------------------------------------------------------


def normalize_id(value: str | None, size: int) -> str:
    """A trace id (size 16) or span id (size 8) as lowercase hex, from hex or base64; "" for none."""
    if not value:
        return ""
    if len(value) == size * 2:
        text = value.lower()
    elif len(value) < size * 2 and all(ch in "0123456789abcdefABCDEF" for ch in value):
        text = value.lower().rjust(size * 2, "0")  # Jaeger drops leading zeros of 64-bit ids
    else:
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise TraceSourceError(f"not a trace or span id: {value!r}") from None
        if len(raw) != size:
            raise TraceSourceError(f"not a trace or span id: {value!r}")
        text = raw.hex()
    return "" if text in _ZERO_IDS else text


# --- OTLP/JSON decoding ------------------------------------------------------------------------


def any_value(value: dict[str, Any]) -> Any:
    """An OTLP ``AnyValue`` as a Python value (64-bit ints arrive as strings)."""
    for key, item in value.items():
        if key == "stringValue" or key == "boolValue" or key == "bytesValue":
            return item
        if key == "intValue":
            return int(item)
        if key == "doubleValue":
            return float(item)
        if key == "arrayValue":
            return [any_value(v) for v in item.get("values", ())]
        if key == "kvlistValue":
            return attributes_of(item.get("values", ()))
    return None


def attributes_of(key_values: Iterable[dict[str, Any]]) -> dict[str, Any]:
    decoded = {}
    for kv in key_values:
        value = kv.get("value") or {}
        text = value.get("stringValue")  # most attributes: skip the general decoder
        decoded[kv["key"]] = text if text is not None else any_value(value)
    return decoded


def _kind(value: Any) -> str:
    if isinstance(value, int):
        return KINDS[value] if 0 <= value < len(KINDS) else "UNSPECIFIED"
    text = str(value or "").upper().removeprefix("SPAN_KIND_")
    return text if text in KINDS else "UNSPECIFIED"


def _is_error(status: dict[str, Any]) -> bool:
    code = status.get("code", 0)
    return code == _STATUS_ERROR or code == "STATUS_CODE_ERROR"


def otlp_spans(document: dict[str, Any]) -> Iterator[Span]:
    """Spans of one OTLP/JSON ``TracesData`` object (``{"resourceSpans": [...]}``)."""
    try:
        for resource_spans in document.get("resourceSpans") or ():
            resource = attributes_of((resource_spans.get("resource") or {}).get("attributes", ()))
            service = c.service_name_now(str(resource.get("service.name", "unknown_service")))
            for scope_spans in resource_spans.get("scopeSpans") or ():
                scope = (scope_spans.get("scope") or {}).get("name", "")
                for raw in scope_spans.get("spans") or ():
                    yield _otlp_span(raw, service, resource, scope)
    except (AttributeError, TypeError, KeyError, ValueError) as error:
        raise TraceSourceError(f"malformed OTLP span data: {type(error).__name__}: {error}") from None


def _otlp_span(raw: dict[str, Any], service: str, resource: dict[str, Any], scope: str) -> Span:
    status = raw.get("status") or {}
    return Span(
        trace_id=normalize_id(raw["traceId"], 16),
        span_id=normalize_id(raw["spanId"], 8),
        parent_id=normalize_id(raw.get("parentSpanId"), 8),
        name=raw.get("name", ""),
        service=service,
        kind=_kind(raw.get("kind", 0)),
        start_ns=int(raw.get("startTimeUnixNano", 0)),
        end_ns=int(raw.get("endTimeUnixNano", 0)),
        error=_is_error(status),
        status_message=status.get("message", ""),
        attributes=attributes_of(raw.get("attributes", ())),
        events=[
            Event(int(e.get("timeUnixNano", 0)), e.get("name", ""), attributes_of(e.get("attributes", ())))
            for e in raw.get("events", ())
        ],
        links=[
            Link(normalize_id(k["traceId"], 16), normalize_id(k["spanId"], 8), attributes_of(k.get("attributes", ())))
            for k in raw.get("links", ())
        ],
        resource=resource,
        scope=scope,
    )


# --- OTLP/JSON encoding (fixtures, benchmarks, exports) ------------------------------------------


def to_any_value(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, list | tuple):
        return {"arrayValue": {"values": [to_any_value(v) for v in value]}}
    if isinstance(value, dict):
        return {"kvlistValue": {"values": to_key_values(value)}}
    return {"stringValue": str(value)}


def to_key_values(attributes: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"key": key, "value": to_any_value(value)} for key, value in attributes.items()]


def _encode_span(span: Span) -> dict[str, Any]:
    encoded: dict[str, Any] = {
        "traceId": span.trace_id,
        "spanId": span.span_id,
        "name": span.name,
        "kind": KINDS.index(span.kind),
        "startTimeUnixNano": str(span.start_ns),
        "endTimeUnixNano": str(span.end_ns),
        "attributes": to_key_values(span.attributes),
        "status": {"code": _STATUS_ERROR, "message": span.status_message} if span.error else {},
    }
    if span.parent_id:
        encoded["parentSpanId"] = span.parent_id
    if span.events:
        encoded["events"] = [
            {"timeUnixNano": str(e.time_ns), "name": e.name, "attributes": to_key_values(e.attributes)}
            for e in span.events
        ]
    if span.links:
        encoded["links"] = [
            {"traceId": k.trace_id, "spanId": k.span_id, "attributes": to_key_values(k.attributes)} for k in span.links
        ]
    return encoded


def to_otlp(spans: Iterable[Span]) -> dict[str, Any]:
    """Spans as one OTLP/JSON ``TracesData`` object, one resource per service."""
    by_service: dict[tuple[str, str], list[Span]] = {}
    for span in spans:
        by_service.setdefault((span.service, span.scope), []).append(span)
    resource_spans = []
    for (service, scope), group in by_service.items():
        resource = {**group[0].resource, "service.name": service}
        resource_spans.append({
            "resource": {"attributes": to_key_values(resource)},
            "scopeSpans": [{"scope": {"name": scope}, "spans": [_encode_span(s) for s in group]}],
        })
    return {"resourceSpans": resource_spans}


# --- grouping a span stream into traces ----------------------------------------------------------

DEFAULT_SETTLE_NS = 300 * 10**9  # longer than the 220 s code-execution limit


class TraceAssembler:
    """Groups spans by trace id and hands out traces once no more of their spans can be expected.

    Exporters append spans when they end, so a file is in end-time order up to the export delay.
    The stream's clock is the latest span end seen; a trace is complete when that clock has moved
    ``settle_ns`` (default 5 min, longer than any background work of the chain) past the clock's
    value when the trace's latest span arrived. Measuring from arrival, not from the span's own
    end, keeps older traces that turn up late (concatenated or rotated files) whole: the clock
    must still move on after them. ``settle_ns=None`` keeps everything until :meth:`flush`. A span
    id seen twice keeps its last copy, so overlapping sources do not double-count.
    """

    def __init__(self, settle_ns: int | None = DEFAULT_SETTLE_NS) -> None:
        self.settle_ns = settle_ns
        self._open: dict[str, dict[str, Span]] = {}
        self._arrived: dict[str, int] = {}  # the clock when each trace's latest span arrived
        self._deadlines: list[tuple[int, str]] = []
        self._clock = 0

    def add(self, span: Span) -> None:
        if span.end_ns > self._clock:
            self._clock = span.end_ns
        spans = self._open.get(span.trace_id)
        if spans is None:
            spans = self._open[span.trace_id] = {}
            if self.settle_ns is not None:
                heapq.heappush(self._deadlines, (self._clock + self.settle_ns, span.trace_id))
        spans[span.span_id] = span
        self._arrived[span.trace_id] = self._clock

    def ready(self) -> Iterator[Trace]:
        """Traces whose settle time has passed on the stream's clock."""
        while self._deadlines and self._deadlines[0][0] <= self._clock:
            _, trace_id = heapq.heappop(self._deadlines)
            deadline = self._arrived[trace_id] + (self.settle_ns or 0)
            if deadline > self._clock:  # more spans arrived since: wait longer
                heapq.heappush(self._deadlines, (deadline, trace_id))
                continue
            yield self._close(trace_id)

    def flush(self) -> Iterator[Trace]:
        for trace_id in list(self._open):
            yield self._close(trace_id)
        self._deadlines.clear()

    def _close(self, trace_id: str) -> Trace:
        del self._arrived[trace_id]
        return Trace(trace_id, self._open.pop(trace_id).values())

    @property
    def open_traces(self) -> int:
        return len(self._open)


def group_traces(spans: Iterable[Span]) -> list[Trace]:
    """All spans at once into traces (for sources that are read whole)."""
    assembler = TraceAssembler(settle_ns=None)
    for span in spans:
        assembler.add(span)
    return list(assembler.flush())
