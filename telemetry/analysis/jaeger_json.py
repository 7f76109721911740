"""Jaeger's v1 JSON (query API ``/api/traces`` answers, UI downloads and uploads) to and from spans.

A trace is ``{"traceID", "spans": [...], "processes": {"p1": {"serviceName", "tags"}}}``; times are
microseconds; the parent is the first ``CHILD_OF`` reference within the trace (as Jaeger's model
has it) and the other references are span links, written back as ``FOLLOWS_FROM``. Span kind and
status travel as the tags ``span.kind``, ``otel.status_code``/``otel.status_description``, ``error``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from telemetry import conventions as c
from telemetry.analysis.traces import Event, Link, Span, Trace, TraceSourceError, normalize_id

_SPECIAL_TAGS = frozenset({"span.kind", "otel.status_code", "otel.status_description", "error", "otel.scope.name"})


def _tag_value(tag: dict[str, Any]) -> Any:
    value, kind = tag.get("value"), str(tag.get("type", "string")).lower()
    if kind == "int64":
        return int(value)
    if kind == "float64":
        return float(value)
    if kind == "bool":
        return value if isinstance(value, bool) else str(value).lower() == "true"
    return value


def _tags(tags: Iterable[dict[str, Any]] | None) -> dict[str, Any]:
    return {tag["key"]: _tag_value(tag) for tag in tags or ()}


def jaeger_trace_spans(trace: dict[str, Any]) -> Iterator[Span]:
    """Spans of one Jaeger v1 trace object."""
    try:
        processes = {pid: (p.get("serviceName", "unknown_service"), _tags(p.get("tags"))) for pid, p in
                     (trace.get("processes") or {}).items()}
        for raw in trace.get("spans") or ():
            yield _span(raw, processes)
    except (AttributeError, TypeError, KeyError, ValueError) as error:
        raise TraceSourceError(f"malformed Jaeger span data: {type(error).__name__}: {error}") from None


def _span(raw: dict[str, Any], processes: dict[str, tuple[str, dict[str, Any]]]) -> Span:
    trace_id = normalize_id(raw["traceID"], 16)
    inline = raw.get("process")
    service, resource = (inline.get("serviceName", "unknown_service"), _tags(inline.get("tags"))) if inline else \
        processes.get(raw.get("processID", ""), ("unknown_service", {}))
    service = c.service_name_now(service)  # traces of earlier versions: "core-api" is CoreAPI
    parent_id, links = "", []
    for ref in raw.get("references") or ():
        ref_trace, ref_span = normalize_id(ref["traceID"], 16), normalize_id(ref["spanID"], 8)
        if not parent_id and ref.get("refType", "CHILD_OF") == "CHILD_OF" and ref_trace == trace_id:
            parent_id = ref_span
        else:
            links.append(Link(ref_trace, ref_span, {}))
    tags = _tags(raw.get("tags"))
    status = str(tags.get("otel.status_code", "")).upper()
    start_ns = int(raw.get("startTime", 0)) * 1000
    return Span(
        trace_id=trace_id,
        span_id=normalize_id(raw["spanID"], 8),
        parent_id=parent_id,
        name=raw.get("operationName", ""),
        service=service,
        kind=str(tags.get("span.kind", "internal")).upper(),
        start_ns=start_ns,
        end_ns=start_ns + int(raw.get("duration", 0)) * 1000,
        error=status == "ERROR" or tags.get("error") in (True, "true"),
        status_message=str(tags.get("otel.status_description", "")),
        attributes={k: v for k, v in tags.items() if k not in _SPECIAL_TAGS},
        events=[Event(int(log.get("timestamp", 0)) * 1000, str(_tags(log.get("fields")).get("event", "")),
                      {k: v for k, v in _tags(log.get("fields")).items() if k != "event"})
                for log in raw.get("logs") or ()],
        links=links,
        resource=resource,
        scope=str(tags.get("otel.scope.name", "")),
    )


def jaeger_document_traces(document: Any) -> Iterator[list[Span]]:
    """Each trace of a Jaeger v1 document: the ``{"data": [...]}`` envelope, a bare list, or one trace."""
    if isinstance(document, dict) and "data" in document:
        traces = document["data"] or []
    elif isinstance(document, list):
        traces = document
    elif isinstance(document, dict) and "spans" in document:
        traces = [document]
    else:
        raise TraceSourceError("not a Jaeger JSON document (expected {\"data\": [...]})")
    for trace in traces:
        if not isinstance(trace, dict):
            raise TraceSourceError("malformed Jaeger JSON: a trace is not an object")
        yield list(jaeger_trace_spans(trace))


# --- writing ------------------------------------------------------------------------------------


def _tag(key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"key": key, "type": "bool", "value": value}
    if isinstance(value, int):
        return {"key": key, "type": "int64", "value": value}
    if isinstance(value, float):
        return {"key": key, "type": "float64", "value": value}
    if isinstance(value, str):
        return {"key": key, "type": "string", "value": value}
    return {"key": key, "type": "string", "value": json.dumps(value)}  # arrays and maps, as Jaeger does


def _span_tags(span: Span) -> list[dict[str, Any]]:
    tags = [_tag(k, v) for k, v in span.attributes.items()]
    if span.scope:
        tags.append(_tag("otel.scope.name", span.scope))
    if span.kind not in ("UNSPECIFIED", "INTERNAL"):
        tags.append(_tag("span.kind", span.kind.lower()))
    if span.error:
        tags += [_tag("otel.status_code", "ERROR"), _tag("error", True)]
        if span.status_message:
            tags.append(_tag("otel.status_description", span.status_message))
    return tags


def to_jaeger_trace(trace: Trace) -> dict[str, Any]:
    processes: dict[str, dict[str, Any]] = {}
    process_ids: dict[str, str] = {}
    spans = []
    for span in trace.spans:
        key = json.dumps([span.service, span.resource], sort_keys=True, default=str)
        if key not in process_ids:
            process_ids[key] = f"p{len(process_ids) + 1}"
            tags = [_tag(k, v) for k, v in span.resource.items() if k != "service.name"]
            processes[process_ids[key]] = {"serviceName": span.service, "tags": tags}
        references = [{"refType": "CHILD_OF", "traceID": span.trace_id, "spanID": span.parent_id}] \
            if span.parent_id else []
        references += [{"refType": "FOLLOWS_FROM", "traceID": k.trace_id, "spanID": k.span_id} for k in span.links]
        start_us = span.start_ns // 1000
        spans.append({
            "traceID": span.trace_id,
            "spanID": span.span_id,
            "operationName": span.name,
            "references": references,
            "startTime": start_us,
            "duration": span.end_ns // 1000 - start_us,
            "tags": _span_tags(span),
            "logs": [{"timestamp": e.time_ns // 1000,
                      "fields": [_tag("event", e.name)] + [_tag(k, v) for k, v in e.attributes.items()]}
                     for e in span.events],
            "processID": process_ids[key],
            "warnings": None,
        })
    return {"traceID": trace.trace_id, "spans": spans, "processes": processes, "warnings": None}


def to_jaeger_document(traces: Iterable[Trace]) -> dict[str, Any]:
    """The envelope Jaeger's query API answers with and its UI's upload tab loads."""
    data = [to_jaeger_trace(trace) for trace in traces]
    return {"data": data, "total": 0, "limit": 0, "offset": 0, "errors": None}
