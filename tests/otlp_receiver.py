"""A real OTLP/HTTP receiver for tests: decodes the protobuf exports the services send over the wire."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from tests.loopback_http import LoopbackServer, Reply, Request
from tests.wait import wait_quiet


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: int  # OTLP enum: 1 internal, 2 server, 3 client
    status_code: int  # 0 unset, 1 ok, 2 error
    start_ns: int
    end_ns: int
    attributes: dict[str, object]
    events: tuple[str, ...]
    links: tuple[tuple[str, str], ...]  # (trace id, span id)
    scope: str = ""  # the instrumentation scope's name


def _value(any_value) -> object:  # noqa: ANN001 - protobuf AnyValue
    kind = any_value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in any_value.array_value.values]
    return getattr(any_value, kind) if kind else None


@dataclass
class OtlpReceiver:
    spans: list[ReceivedSpan] = field(default_factory=list)
    metric_names: set[str] = field(default_factory=set)
    requests: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> OtlpReceiver:
        self._server = LoopbackServer(self._receive)
        return self

    def _receive(self, request: Request) -> Reply:
        if request.path == "/v1/traces":
            self._traces(ExportTraceServiceRequest.FromString(request.body))
            return Reply(body=ExportTraceServiceResponse().SerializeToString(), content_type="application/x-protobuf")
        if request.path == "/v1/metrics":
            self._metrics(ExportMetricsServiceRequest.FromString(request.body))
            return Reply(body=ExportMetricsServiceResponse().SerializeToString(), content_type="application/x-protobuf")
        return Reply(content_type="application/x-protobuf")

    @property
    def endpoint(self) -> str:
        return self._server.url

    def stop(self) -> None:
        self._server.stop()

    def _traces(self, request: ExportTraceServiceRequest) -> None:
        received = []
        for resource_spans in request.resource_spans:
            resource = {kv.key: _value(kv.value) for kv in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    received.append(ReceivedSpan(
                        service=str(resource.get("service.name")),
                        trace_id=span.trace_id.hex(), span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex(), name=span.name, kind=span.kind,
                        status_code=span.status.code, start_ns=span.start_time_unix_nano,
                        end_ns=span.end_time_unix_nano,
                        attributes={kv.key: _value(kv.value) for kv in span.attributes},
                        events=tuple(event.name for event in span.events),
                        links=tuple((link.trace_id.hex(), link.span_id.hex()) for link in span.links),
                        scope=scope_spans.scope.name,
                    ))
        with self._lock:
            self.requests += 1
            self.spans.extend(received)

    def _metrics(self, request: ExportMetricsServiceRequest) -> None:
        with self._lock:
            for resource_metrics in request.resource_metrics:
                for scope_metrics in resource_metrics.scope_metrics:
                    self.metric_names.update(metric.name for metric in scope_metrics.metrics)

    def trace(self, trace_id: str) -> list[ReceivedSpan]:
        with self._lock:
            return [span for span in self.spans if span.trace_id == trace_id]

    def settle(self, trace_id: str, quiet_s: float, timeout_s: float = 10.0) -> list[ReceivedSpan]:
        """The trace's spans once none came for ``quiet_s``: each service exports in batches (its
        ``OTEL_BSP_SCHEDULE_DELAY`` apart) and nothing marks a trace's last one."""
        wait_quiet(lambda: len(self.trace(trace_id)), f"the spans of trace {trace_id}", quiet_s, timeout_s)
        return self.trace(trace_id)

    def wait_for(self, condition: Callable[[], bool], timeout_s: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if condition():
                return True
            time.sleep(0.05)
        return condition()
