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


def _flags(parent: SpanContext | None) -> int:
    return _FLAGS_REMOTE if parent is not None and parent.is_remote else _FLAGS_LOCAL


# The span lines are written as text, not as dicts for json.dumps: two dicts per attribute and the generic
# encoder's pass over them cost ~2x the time, in a thread that shares the GIL with the request path.
_quote = json.encoder.encode_basestring  # C-accelerated; non-ASCII text stays as it is


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _value_text(value: Any) -> str:
    kind = type(value)
    if kind is str:
        return '{"stringValue":' + _quote(value) + "}"
    if kind is bool:
        return '{"boolValue":true}' if value else '{"boolValue":false}'
    if kind is int:
        return f'{{"intValue":"{value}"}}'
    return _dumps(_value(value))


def _attribute_fields(attributes: Mapping[str, Any] | None, dropped: int = 0) -> str:
    """``"attributes":[...]`` and the dropped count as fields of an object, each led by a comma."""
    encoded = []
    for key, value in (attributes or {}).items():
        try:
            encoded.append('{"key":' + _quote(key) + ',"value":' + _value_text(value) + "}")
        except TypeError as error:  # as the protobuf encoder: log and leave the attribute out
            _log.warning("attribute %s not exported: %s", key, error)
    text = ',"attributes":[' + ",".join(encoded) + "]" if encoded else ""
    return text + (f',"droppedAttributesCount":{dropped}' if dropped else "")


def _object(fields: str) -> str:
    """An object of comma-led fields."""
    return "{" + fields.removeprefix(",") + "}"


def _span_text(span: ReadableSpan) -> str:
    context = span.get_span_context()
    assert context is not None
    parts = [f'{{"traceId":"{context.trace_id:032x}","spanId":"{context.span_id:016x}"']
    if context.trace_state:
        parts.append(',"traceState":' + _quote(",".join(f"{k}={v}" for k, v in context.trace_state.items())))
    if span.parent is not None:
        parts.append(f',"parentSpanId":"{span.parent.span_id:016x}"')
    if span.name:
        parts.append(',"name":' + _quote(span.name))
    parts.append(f',"kind":{span.kind.value + 1}')  # SDK SpanKind INTERNAL=0 ...; OTLP INTERNAL=1 ...
    if span.start_time:
        parts.append(f',"startTimeUnixNano":"{span.start_time}"')
    if span.end_time:
        parts.append(f',"endTimeUnixNano":"{span.end_time}"')
    parts.append(_attribute_fields(span.attributes, span.dropped_attributes))
    if span.events:
        events = []
        for event in span.events:
            head = f'{{"timeUnixNano":"{event.timestamp}"' + (',"name":' + _quote(event.name) if event.name else "")
            events.append(head + _attribute_fields(event.attributes, event.dropped_attributes) + "}")
        parts.append(',"events":[' + ",".join(events) + "]")
    if span.dropped_events:
        parts.append(f',"droppedEventsCount":{span.dropped_events}')
    if span.links:
        links = [
            f'{{"traceId":"{link.context.trace_id:032x}","spanId":"{link.context.span_id:016x}"'
            + _attribute_fields(link.attributes, link.dropped_attributes) + f',"flags":{_flags(link.context)}}}'
            for link in span.links
        ]
        parts.append(',"links":[' + ",".join(links) + "]")
    if span.dropped_links:
        parts.append(f',"droppedLinksCount":{span.dropped_links}')
    status = []
    if span.status.description:
        status.append('"message":' + _quote(span.status.description))
    if span.status.status_code.value:
        status.append(f'"code":{span.status.status_code.value}')
    parts.append(',"status":{' + ",".join(status) + f'}},"flags":{_flags(span.parent)}}}')
    return "".join(parts)


def _scope_text(scope: InstrumentationScope | None) -> str:
    if scope is None:
        return "{}"
    name = ',"name":' + _quote(scope.name) if scope.name else ""
    version = ',"version":' + _quote(scope.version) if scope.version else ""
    return _object(name + version + _attribute_fields(scope.attributes))


def spans_to_otlp_json(spans: Sequence[ReadableSpan]) -> str:
    """An export request of ``spans`` as one OTLP/JSON line (no newline), grouped by resource then scope
    as the SDK's protobuf encoder groups them."""
    grouped: dict[Resource, dict[InstrumentationScope | None, list[str]]] = {}
    for span in spans:
        by_scope = grouped.setdefault(span.resource, {})
        by_scope.setdefault(span.instrumentation_scope or None, []).append(_span_text(span))
    resource_spans = []
    for resource, by_scope in grouped.items():
        scope_spans = []
        for scope, encoded in by_scope.items():
            schema = ',"schemaUrl":' + _quote(scope.schema_url) if scope is not None and scope.schema_url else ""
            scope_spans.append('{"scope":' + _scope_text(scope) + ',"spans":[' + ",".join(encoded) + "]" + schema + "}")
        item = '{"resource":' + _object(_attribute_fields(resource.attributes)) + ',"scopeSpans":['
        item += ",".join(scope_spans) + "]"
        item += (',"schemaUrl":' + _quote(resource.schema_url) if resource.schema_url else "") + "}"
        resource_spans.append(item)
    return '{"resourceSpans":[' + ",".join(resource_spans) + "]}" if resource_spans else "{}"


# --- the file and the exporters --------------------------------------------------------------


class JsonLinesFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    def append(self, document: dict[str, Any] | str) -> None:
        text = document if isinstance(document, str) else json.dumps(document, separators=(",", ":"))
        line = (text + "\n").encode()
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
