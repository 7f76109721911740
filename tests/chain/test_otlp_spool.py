"""The benchmarks' OTLP receiver (benchmarks/otlp_sink.py) as its own process: spans a real OTLPSpanExporter
sends it come back, decoded after the run, exactly as the embedded traces.jsonl exporter writes them."""

from __future__ import annotations

from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from benchmarks.otlp_sink import LENGTH, otlp_receiver, spool_to_jsonl, spooled_requests
from telemetry.analysis.trace_sources import FileSource
from telemetry.analysis.traces import Span
from telemetry.otlp_json import JsonLinesSpanExporter


def emit(provider: TracerProvider) -> dict[str, tuple[int, int]]:
    """A small trace of every kind, with attributes of every type, an event, a link and an error."""
    tracer = provider.get_tracer("bench.test", "1.2.3")
    ids: dict[str, tuple[int, int]] = {}
    with tracer.start_as_current_span("POST /instances/{instanceId}/completions", kind=SpanKind.SERVER,
                                      attributes={"http.response.status_code": 202, "flag": True,
                                                  "ratio": 0.5, "names": ["a", "b"], "text": "zé"}) as root:
        ids["server"] = (root.get_span_context().trace_id, root.get_span_context().span_id)
        with tracer.start_as_current_span("POST", kind=SpanKind.CLIENT) as client:
            client.set_attribute("url.full", "http://127.0.0.1:1/files?identifier=hash")
            ids["client"] = (client.get_span_context().trace_id, client.get_span_context().span_id)
        with tracer.start_as_current_span("workflow", links=[Link(root.get_span_context(), {"why": "test"})]) as inner:
            inner.add_event("step", {"n": 3})
            inner.set_status(Status(StatusCode.ERROR, "it broke"))
            ids["internal"] = (inner.get_span_context().trace_id, inner.get_span_context().span_id)
    return ids


def spans_of(path: Path) -> dict[str, Span]:
    return {span.span_id: span for trace in FileSource(path, settle_ns=None).traces() for span in trace.spans}


@pytest.mark.parametrize("compression", [Compression.NoCompression, Compression.Gzip])
def test_spooled_exports_decode_into_the_embedded_exporters_lines(tmp_path: Path, compression: Compression) -> None:
    spool, reference = tmp_path / "traces.spool", tmp_path / "reference.jsonl"
    resource = Resource.create({"service.name": "ContextAPI", "service.instance.id": "host-1"})
    with otlp_receiver(spool) as endpoint:
        provider = TracerProvider(resource=resource)
        provider.add_span_processor(SimpleSpanProcessor(
            OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces", compression=compression)))
        provider.add_span_processor(SimpleSpanProcessor(JsonLinesSpanExporter(reference)))
        ids = emit(provider)
        provider.shutdown()
    assert len(list(spooled_requests(spool))) == 3  # one export per span: nothing decoded until now

    assert spool_to_jsonl(spool, tmp_path / "decoded.jsonl") == 3
    decoded, expected = spans_of(tmp_path / "decoded.jsonl"), spans_of(reference)
    assert decoded == expected  # ids, names, kinds, times, attributes, events, links, status, resource, scope
    server = decoded[f"{ids['server'][1]:016x}"]
    assert server.trace_id == f"{ids['server'][0]:032x}" and server.parent_id == ""
    assert server.kind == "SERVER" and server.service == "ContextAPI"
    assert server.attributes == {"http.response.status_code": 202, "flag": True, "ratio": 0.5,
                                 "names": ["a", "b"], "text": "zé"}
    assert server.resource["service.instance.id"] == "host-1" and server.scope == "bench.test"
    client = decoded[f"{ids['client'][1]:016x}"]
    assert client.kind == "CLIENT" and client.parent_id == server.span_id and client.name == "POST"
    internal = decoded[f"{ids['internal'][1]:016x}"]
    assert internal.kind == "INTERNAL" and internal.error and internal.status_message == "it broke"
    assert [(e.name, e.attributes) for e in internal.events] == [("step", {"n": 3})]
    assert [(k.span_id, k.attributes) for k in internal.links] == [(server.span_id, {"why": "test"})]


def test_metrics_are_dropped_and_a_cut_record_ends_the_spool(tmp_path: Path) -> None:
    import httpx

    spool = tmp_path / "traces.spool"
    with otlp_receiver(spool) as endpoint:
        assert httpx.post(f"{endpoint}/v1/metrics", content=b"\x0a\x00").status_code == 200
        assert httpx.post(f"{endpoint}/v1/traces", content=b"").status_code == 200
    assert list(spooled_requests(spool)) == [b""]
    with spool.open("ab") as handle:  # a receiver killed mid-write
        handle.write(LENGTH.pack(100) + b"\x0a\x02")
    assert list(spooled_requests(spool)) == [b""]
    assert spool_to_jsonl(spool, tmp_path / "decoded.jsonl") == 0
    assert (tmp_path / "decoded.jsonl").read_text() == ""


def test_a_body_that_is_not_an_export_is_named(tmp_path: Path) -> None:
    spool = tmp_path / "traces.spool"
    spool.write_bytes(LENGTH.pack(3) + b"\xff\xff\xff")
    with pytest.raises(ValueError, match="export 1 is not an ExportTraceServiceRequest"):
        spool_to_jsonl(spool, tmp_path / "decoded.jsonl")
