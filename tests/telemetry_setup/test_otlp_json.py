"""The direct span encoder writes exactly what protobuf's MessageToDict makes of the OTLP request."""

from __future__ import annotations

import json
import math

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    set_span_in_context,
)
from opentelemetry.trace.span import TraceState

from telemetry.otlp_json import spans_to_otlp_json, to_otlp_json


class _Keep(SpanExporter):
    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def export(self, spans: list[ReadableSpan]) -> SpanExportResult:  # type: ignore[override]
        self.spans.extend(spans)
        return SpanExportResult.SUCCESS


def _spans() -> list[ReadableSpan]:
    kept = _Keep()
    providers = [
        TracerProvider(resource=Resource.create({"service.name": "a", "n": 1}, schema_url="https://schema/1")),
        TracerProvider(resource=Resource.create({"service.name": "b"})),
    ]
    for provider in providers:
        provider.add_span_processor(SimpleSpanProcessor(kept))
    remote = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(1),
                         trace_state=TraceState([("k", "v"), ("x", "1")]))
    local = SpanContext(0x1, 0x2, is_remote=False)
    tracer = providers[0].get_tracer("fastapi", "0.66b1", schema_url="https://schema/2",
                                     attributes={"scope.attr": True})
    with tracer.start_as_current_span("root", context=set_span_in_context(NonRecordingSpan(remote)),
                                      kind=SpanKind.SERVER) as root:
        root.set_attributes({
            "s": "text", "empty": "", "i": 42, "zero": 0, "neg": -7, "big": 2**62, "f": 1.5, "whole": 2.0,
            "nan": math.nan, "inf": math.inf, "ninf": -math.inf, "b": True, "no": False,
            "strs": ["a", ""], "ints": [1, 2], "floats": [0.5], "bools": [False], "none": [],
        })
        root.add_event("with attributes", {"k": "v", "n": 3})
        root.add_event("bare")
        root.add_event("", {"x": 1})
        with tracer.start_as_current_span("child", kind=SpanKind.CLIENT,
                                          links=[Link(remote, {"foundationallm.link": "operation"}), Link(local)]):
            pass
        root.set_status(Status(StatusCode.ERROR, "it failed"))
    for kind in (SpanKind.INTERNAL, SpanKind.PRODUCER, SpanKind.CONSUMER):
        with providers[0].get_tracer("other").start_as_current_span(f"k{kind.value}", kind=kind) as span:
            span.set_status(Status(StatusCode.OK))
    with providers[1].get_tracer("b").start_as_current_span("in b"):
        pass
    return kept.spans


def test_the_direct_encoder_equals_protobufs_json() -> None:
    spans = _spans()
    assert json.loads(spans_to_otlp_json(spans)) == to_otlp_json(encode_spans(spans))


def test_one_span_at_a_time_and_none() -> None:
    for span in _spans():
        assert json.loads(spans_to_otlp_json([span])) == to_otlp_json(encode_spans([span]))
    assert json.loads(spans_to_otlp_json([])) == to_otlp_json(encode_spans([]))
