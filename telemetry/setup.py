"""One switch that sets up traces, metrics and logs for a service process.

Backends, chosen by configuration (several at once allowed):
- the embedded default: OTLP/JSON lines appended to ``<data dir>/traces.jsonl`` (and metrics.jsonl),
  unless ``FLLM_TELEMETRY_FILE=off``;
- OTLP (http/protobuf, or grpc with ``OTEL_EXPORTER_OTLP_PROTOCOL=grpc``) when
  ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set;
- Azure Monitor when ``APPLICATIONINSIGHTS_CONNECTION_STRING`` is set.
``OTEL_SDK_DISABLED=true`` turns all of it off (no-op providers).

Telemetry never blocks a request: spans go through bounded batch queues, exporters run in their
own threads, and a dead collector only costs the spans it drops.
"""

from __future__ import annotations

import logging
import os
import platform
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from opentelemetry import baggage, metrics, trace
from opentelemetry._logs import set_logger_provider
from opentelemetry.context import Context
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

from services.common.settings import TelemetrySwitches
from telemetry import conventions as c
from telemetry.otlp_json import JsonLinesMetricExporter, JsonLinesSpanExporter

APP_LOGGER = "foundationallm"
_LOCAL_DEFAULTS = {
    # Loopback only: the Azure distro must not probe the VM metadata address or live-metrics hosts.
    "OTEL_EXPERIMENTAL_RESOURCE_DETECTORS": "otel",
    "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
    "OTEL_SEMCONV_STABILITY_OPT_IN": "http",
    # Short batches so a trace is readable a moment after the answer; bounded queue.
    "OTEL_BSP_SCHEDULE_DELAY": "200",
    "OTEL_BSP_MAX_QUEUE_SIZE": "4096",
    "OTEL_BSP_EXPORT_TIMEOUT": "5000",
    "OTEL_EXPORTER_OTLP_TIMEOUT": "5",
}


# The OTLP batches go out a second apart unless OTEL_BSP_SCHEDULE_DELAY was set (or
# FLLM_OTLP_SCHEDULE_DELAY_MS is): each OTLP POST costs ~1-3 ms of CPU in the exporting process, and at
# 200 ms nine services make ~45 a second, ~10% of the chain's CPU under load. The JSON-lines file
# keeps 200 ms: `callstack trace` reads it right after an answer.
OTLP_SCHEDULE_DELAY_MS = 1000
_defaulted: set[str] = set()


def apply_local_defaults() -> None:
    for key, value in _LOCAL_DEFAULTS.items():
        if key not in os.environ:
            os.environ[key] = value
            _defaulted.add(key)


def otlp_schedule_delay_ms() -> int | None:
    """The OTLP span batches' delay; None: OTEL_BSP_SCHEDULE_DELAY's, as every other batch."""
    configured = TelemetrySwitches().otlp_schedule_delay_ms
    if configured is not None:
        return configured
    return OTLP_SCHEDULE_DELAY_MS if "OTEL_BSP_SCHEDULE_DELAY" in _defaulted else None


@dataclass
class TelemetrySettings:
    service_name: str
    data_dir: Path
    service_version: str = "0.1.0"
    environment: str = "local"
    instance_id: str = ""
    file_export: bool = True
    otlp_endpoint: str = ""
    otlp_protocol: str = "http/protobuf"
    azure_connection_string: str = ""
    metric_interval_ms: int = 15_000
    disabled: bool = False

    @classmethod
    def from_env(cls, service_name: str, data_dir: Path, instance_id: str = "") -> TelemetrySettings:
        env = os.environ
        switches = TelemetrySwitches()
        return cls(
            service_name=service_name,
            data_dir=data_dir,
            service_version=switches.version,
            environment=switches.environment,
            instance_id=instance_id or switches.instance_id,
            file_export=switches.telemetry_file,
            otlp_endpoint=env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT", ""),
            otlp_protocol=env.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            azure_connection_string=env.get("APPLICATIONINSIGHTS_CONNECTION_STRING", ""),
            metric_interval_ms=int(env.get("OTEL_METRIC_EXPORT_INTERVAL", "15000")),
            disabled=env.get("OTEL_SDK_DISABLED", "").lower() == "true",
        )


@dataclass
class Telemetry:
    settings: TelemetrySettings
    tracer_provider: TracerProvider | None = None
    meter_provider: MeterProvider | None = None
    logger_provider: LoggerProvider | None = None
    span_exporters: list[SpanExporter] = field(default_factory=list)

    def shutdown(self, timeout_s: float = 3.0) -> None:
        """Flush and stop, side by side and bounded: a dead collector must not hold up an exit."""
        providers = [p for p in (self.tracer_provider, self.meter_provider, self.logger_provider) if p is not None]
        threads = [threading.Thread(target=provider.shutdown, daemon=True) for provider in providers]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + timeout_s
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))


_active: Telemetry | None = None


class FoundationaLLMBaggageProcessor(SpanProcessor):
    """Stamps the FoundationaLLM ids carried in baggage on every span, the automatic HTTP ones too."""

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        entries = baggage.get_all(parent_context)
        if entries:  # one set_attributes: each set_attribute call takes the span's lock and checks the value
            ids = {k: v for k, v in entries.items() if k.startswith("foundationallm.") and isinstance(v, str)}
            if ids:
                span.set_attributes(ids)


def resource_for(settings: TelemetrySettings) -> Resource:
    attributes = {
        "service.name": settings.service_name,
        "service.namespace": c.SERVICE_NAMESPACE,
        "service.version": settings.service_version,
        "service.instance.id": f"{platform.node()}-{os.getpid()}",
        "deployment.environment.name": settings.environment,
        c.ATTR_INSTANCE_ID: settings.instance_id,
    }
    return Resource.create({key: value for key, value in attributes.items() if value})


def _otlp_exporters(settings: TelemetrySettings) -> tuple[SpanExporter, object, object]:
    if settings.otlp_protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    else:
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    return OTLPSpanExporter(), OTLPMetricExporter(), OTLPLogExporter()


def _histogram_views() -> list[View]:
    buckets = ExplicitBucketHistogramAggregation(list(c.DURATION_BUCKETS_S))
    return [
        View(instrument_name=c.METRIC_CODE_EXECUTION_DURATION, aggregation=buckets),
        View(instrument_name=c.METRIC_OPERATION_DURATION, aggregation=buckets),
    ]


def configure_telemetry(settings: TelemetrySettings) -> Telemetry:
    """Set the global providers once per process; a second call returns the first setup."""
    global _active
    if _active is not None:
        return _active
    apply_local_defaults()
    telemetry = Telemetry(settings)
    _active = telemetry
    if settings.disabled:
        return telemetry

    resource = resource_for(settings)
    metric_readers: list[MetricReader] = []
    log_exporter = None
    if settings.file_export:
        telemetry.span_exporters.append(JsonLinesSpanExporter(settings.data_dir / "traces.jsonl"))
        metric_readers.append(
            PeriodicExportingMetricReader(
                JsonLinesMetricExporter(settings.data_dir / "metrics.jsonl"),
                export_interval_millis=settings.metric_interval_ms,
            )
        )
    span_processors: list[SpanProcessor] = [FoundationaLLMBaggageProcessor()]
    span_processors += [BatchSpanProcessor(exporter) for exporter in telemetry.span_exporters]
    if settings.otlp_endpoint:
        span_exporter, metric_exporter, log_exporter = _otlp_exporters(settings)
        telemetry.span_exporters.append(span_exporter)
        span_processors.append(BatchSpanProcessor(span_exporter, schedule_delay_millis=otlp_schedule_delay_ms()))
        metric_readers.append(
            PeriodicExportingMetricReader(metric_exporter, export_interval_millis=settings.metric_interval_ms)
        )

    if settings.azure_connection_string:
        _configure_azure_monitor(telemetry, resource, span_processors, metric_readers)
    else:
        # Shut down by Telemetry.shutdown (bounded), not by atexit hooks that wait out every retry.
        provider = TracerProvider(resource=resource, shutdown_on_exit=False)
        for processor in span_processors:
            provider.add_span_processor(processor)
        trace.set_tracer_provider(provider)
        meter_provider = MeterProvider(
            resource=resource, metric_readers=metric_readers, views=_histogram_views(), shutdown_on_exit=False
        )
        metrics.set_meter_provider(meter_provider)
        telemetry.tracer_provider, telemetry.meter_provider = provider, meter_provider
        if log_exporter is not None:
            logger_provider = LoggerProvider(resource=resource, shutdown_on_exit=False)
            logger_provider.add_log_record_processor(BatchLogRecordProcessor(log_exporter))
            set_logger_provider(logger_provider)
            logging.getLogger(APP_LOGGER).addHandler(LoggingHandler(logger_provider=logger_provider))
            telemetry.logger_provider = logger_provider

    return telemetry


def _configure_azure_monitor(
    telemetry: Telemetry,
    resource: Resource,
    span_processors: list[SpanProcessor],
    metric_readers: list[MetricReader],
) -> None:
    from azure.monitor.opentelemetry import configure_azure_monitor

    configure_azure_monitor(
        connection_string=telemetry.settings.azure_connection_string,
        resource=resource,
        sampling_ratio=1.0,  # the distro's default rate limit would break end-to-end traces
        enable_live_metrics=False,
        disable_offline_storage=True,
        logger_name=APP_LOGGER,  # never the root logger: the exporter's own warnings would loop
        span_processors=span_processors,
        metric_readers=metric_readers,
        views=_histogram_views(),
        # The services instrument their app and their httpx clients themselves, once, with their own
        # exclusions and hooks (telemetry.server, telemetry.http_client).
        instrumentation_options={"fastapi": {"enabled": False}, "httpx": {"enabled": False}},
    )
    tracer_provider = trace.get_tracer_provider()
    meter_provider = metrics.get_meter_provider()
    telemetry.tracer_provider = tracer_provider if isinstance(tracer_provider, TracerProvider) else None
    telemetry.meter_provider = meter_provider if isinstance(meter_provider, MeterProvider) else None


def shutdown_telemetry() -> None:
    global _active
    if _active is not None:
        _active.shutdown()
        _active = None
