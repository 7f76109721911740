"""The span encoder the OTLP exporters use makes exactly the request their own encoder makes."""

from __future__ import annotations

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as exporters_encode_spans

from telemetry.otlp_proto import encode_spans, use_for_otlp_exporters
from tests.telemetry.test_otlp_json import _spans


def test_the_request_and_its_bytes_are_the_exporters_own() -> None:
    spans = _spans()
    ours, theirs = encode_spans(spans), exporters_encode_spans(spans)
    assert ours == theirs
    assert ours.SerializeToString(deterministic=True) == theirs.SerializeToString(deterministic=True)
    for span in spans:
        assert encode_spans([span]) == exporters_encode_spans([span])
    assert encode_spans([]) == exporters_encode_spans([])


def test_both_otlp_exporters_look_their_encoder_up_by_the_name_it_replaces() -> None:
    from opentelemetry.exporter.otlp.proto.grpc import trace_exporter as grpc_exporter
    from opentelemetry.exporter.otlp.proto.http import trace_exporter as http_exporter

    use_for_otlp_exporters()
    assert http_exporter.encode_spans is encode_spans
    assert grpc_exporter.encode_spans is encode_spans
    # The HTTP exporter calls it inside export(), the gRPC one inside _translate_data().
    assert "encode_spans" in http_exporter.OTLPSpanExporter.export.__code__.co_names
    assert "encode_spans" in grpc_exporter.OTLPSpanExporter._translate_data.__code__.co_names
    spans = _spans()
    assert grpc_exporter.OTLPSpanExporter._translate_data(None, spans) == exporters_encode_spans(spans)  # type: ignore[arg-type]
