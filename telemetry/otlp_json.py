"""Exporters that append OTLP/JSON lines to a file, as the collector's file exporter writes them.

One ``{"resourceSpans": [...]}`` (or ``{"resourceMetrics": [...]}``) object per line. Ids are hex
(OTLP/JSON, not protobuf's base64), enums are integers, 64-bit integers are strings. Several service
processes append to the same file: each batch is one ``write`` under an exclusive ``flock``.

Spans are encoded straight from the SDK's ``ReadableSpan`` (``spans_to_otlp_json``): the same
document protobuf's ``MessageToDict`` makes of ``encode_spans``, at a fraction of the cost, since the
export thread shares the GIL with the request path. Metrics (a few documents a minute) go through
protobuf.
"""

from __future__ import annotations

import base64
import fcntl
import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from google.protobuf.json_format import MessageToDict
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext

_ID_KEYS = frozenset({"traceId", "spanId", "parentSpanId"})
# SpanFlags: the "has is-remote" bit, and the "is remote" bit for a remote parent or link.
_FLAGS_LOCAL, _FLAGS_REMOTE = 0x100, 0x300
_log = logging.getLogger(__name__)


def _hex_ids(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            k: (base64.b64decode(v).hex() if k in _ID_KEYS and isinstance(v, str) else _hex_ids(v))
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_hex_ids(item) for item in node]
    return node


def to_otlp_json(message: Any) -> dict[str, Any]:
    """A protobuf export request as OTLP/JSON (hex ids, integer enums, camelCase names)."""
    return _hex_ids(MessageToDict(message, use_integers_for_enums=True))


# --- spans, encoded directly -------------------------------------------------------------------


def _value(value: Any) -> dict[str, Any]:
    """An AnyValue (oneof: set even when it holds its type's default)."""
    if value is None:
        return {}
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, str):
        return {"stringValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        if math.isnan(value):
            return {"doubleValue": "NaN"}
        if math.isinf(value):
            return {"doubleValue": "Infinity" if value > 0 else "-Infinity"}
        return {"doubleValue": value}
    if isinstance(value, bytes):
        return {"bytesValue": base64.b64encode(value).decode()}
    if isinstance(value, Sequence):
        values = [_value(item) for item in value]
        return {"arrayValue": {"values": values} if values else {}}
    if isinstance(value, Mapping):
        pairs = [{"key": str(k), "value": _value(v)} for k, v in value.items()]
        return {"kvlistValue": {"values": pairs} if pairs else {}}
    raise TypeError(f"invalid attribute type {type(value).__name__}")


def _attributes(attributes: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    encoded = []
    for key, value in (attributes or {}).items():
        try:
            encoded.append({"key": key, "value": _value(value)})
        except TypeError as error:  # as the protobuf encoder: log and leave the attribute out
            _log.warning("attribute %s not exported: %s", key, error)
    return encoded


def _with_attributes(target: dict[str, Any], attributes: Mapping[str, Any] | None, dropped: int) -> dict[str, Any]:
    encoded = _attributes(attributes)
    if encoded:
        target["attributes"] = encoded
    if dropped:
        target["droppedAttributesCount"] = dropped
    return target


def _flags(parent: SpanContext | None) -> int:
    return _FLAGS_REMOTE if parent is not None and parent.is_remote else _FLAGS_LOCAL


def _span(span: ReadableSpan) -> dict[str, Any]:
    context = span.get_span_context()
    assert context is not None
    encoded: dict[str, Any] = {"traceId": format(context.trace_id, "032x"), "spanId": format(context.span_id, "016x")}
    trace_state = ",".join(f"{key}={value}" for key, value in context.trace_state.items())
    if trace_state:
        encoded["traceState"] = trace_state
    if span.parent is not None:
        encoded["parentSpanId"] = format(span.parent.span_id, "016x")
    if span.name:
        encoded["name"] = span.name
    encoded["kind"] = span.kind.value + 1  # SDK SpanKind INTERNAL=0 ... ; OTLP SPAN_KIND_INTERNAL=1 ...
    if span.start_time:
        encoded["startTimeUnixNano"] = str(span.start_time)
    if span.end_time:
        encoded["endTimeUnixNano"] = str(span.end_time)
    _with_attributes(encoded, span.attributes, 0)
    if span.dropped_attributes:
        encoded["droppedAttributesCount"] = span.dropped_attributes
    if span.events:
        encoded["events"] = [
            _with_attributes({"timeUnixNano": str(event.timestamp), "name": event.name}
                             if event.name else {"timeUnixNano": str(event.timestamp)},
                             event.attributes, event.dropped_attributes)
            for event in span.events
        ]
    if span.dropped_events:
        encoded["droppedEventsCount"] = span.dropped_events
    if span.links:
        encoded["links"] = [
            {**_with_attributes({"traceId": format(link.context.trace_id, "032x"),
                                 "spanId": format(link.context.span_id, "016x")},
                                link.attributes, link.dropped_attributes),
             "flags": _flags(link.context)}
            for link in span.links
        ]
    if span.dropped_links:
        encoded["droppedLinksCount"] = span.dropped_links
    status: dict[str, Any] = {}
    if span.status.description:
        status["message"] = span.status.description
    if span.status.status_code.value:
        status["code"] = span.status.status_code.value
    encoded["status"] = status
    encoded["flags"] = _flags(span.parent)
    return encoded


def _scope(scope: InstrumentationScope | None) -> dict[str, Any]:
    if scope is None:
        return {}
    encoded: dict[str, Any] = {}
    if scope.name:
        encoded["name"] = scope.name
    if scope.version:
        encoded["version"] = scope.version
    return _with_attributes(encoded, scope.attributes, 0)


def spans_to_otlp_json(spans: Sequence[ReadableSpan]) -> dict[str, Any]:
    """An export request of ``spans`` as OTLP/JSON, grouped by resource then scope as the SDK does."""
    grouped: dict[Resource, dict[InstrumentationScope | None, list[dict[str, Any]]]] = {}
    for span in spans:
        by_scope = grouped.setdefault(span.resource, {})
        by_scope.setdefault(span.instrumentation_scope or None, []).append(_span(span))
    resource_spans = []
    for resource, by_scope in grouped.items():
        scope_spans = []
        for scope, encoded in by_scope.items():
            entry: dict[str, Any] = {"scope": _scope(scope), "spans": encoded}
            if scope is not None and scope.schema_url:
                entry["schemaUrl"] = scope.schema_url
            scope_spans.append(entry)
        item: dict[str, Any] = {"resource": _with_attributes({}, resource.attributes, 0), "scopeSpans": scope_spans}
        if resource.schema_url:
            item["schemaUrl"] = resource.schema_url
        resource_spans.append(item)
    return {"resourceSpans": resource_spans} if resource_spans else {}


# --- the file and the exporters --------------------------------------------------------------


class JsonLinesFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    def append(self, document: dict[str, Any]) -> None:
        line = (json.dumps(document, separators=(",", ":")) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            view = memoryview(line)
            while view:
                written = os.write(fd, view)
                view = view[written:]
        finally:
            os.close(fd)  # closing releases the lock


class JsonLinesSpanExporter(SpanExporter):
    def __init__(self, path: Path) -> None:
        self._file = JsonLinesFile(path)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            self._file.append(spans_to_otlp_json(spans))
        except OSError:
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
class JsonLinesMetricExporter(MetricExporter):
    def __init__(self, path: Path) -> None:
        super().__init__()
        self._file = JsonLinesFile(path)

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        try:
            self._file.append(to_otlp_json(encode_metrics(metrics_data)))
        except OSError:
            return MetricExportResult.FAILURE
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        pass
