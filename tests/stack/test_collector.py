"""otel-collector.yaml: pipelines wired, current component names, and the metrics it makes of the chain's
spans being exactly the ones the dashboards, alert rules and Jaeger's Monitor tab query."""

from __future__ import annotations

import re

import pytest

from telemetry import conventions as c
from tests.stack import chain_spans
from tests.stack.spanmetrics_model import (
    ANY,
    component_type,
    prometheus_names,
    service_metric_series,
    span_metrics_connectors_fed_by_otlp,
)
from tests.stack.stack_files import all_queries, collector_config, collector_series, problems

SIGNALS = {"traces", "metrics", "logs"}
CONNECTOR_SIGNALS = {"span_metrics": ("traces", "metrics"), "forward": None}  # None: same signal both sides
DEPRECATED_TYPES = {"spanmetrics", "otlphttp", "azuremonitor", "logging", "tailsampling", "memorylimiter"}
# Hops a recording may not have used (gatekeeper bypassed, the other code session provider).
OPTIONAL_HOPS = {"service_name": {c.GATEKEEPER_API, c.CODE_SESSION_API},
                 "server_address": {chain_spans.HOST[c.GATEKEEPER_API], chain_spans.HOST[c.CODE_SESSION_API]}}


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([0-9.]+)(ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * (1 if unit == "ms" else 1000)


@pytest.mark.parametrize("azure_monitor", [False, True], ids=["local", "with-azure-monitor"])
def test_every_component_referenced_exists_and_every_defined_one_is_used(azure_monitor: bool) -> None:
    config = collector_config(azure_monitor)
    pipelines = config["service"]["pipelines"]
    used: dict[str, set[str]] = {"receivers": set(), "processors": set(), "exporters": set()}
    for pipeline_id, pipeline in pipelines.items():
        assert component_type(pipeline_id) in SIGNALS, pipeline_id
        assert pipeline.get("receivers") and pipeline.get("exporters"), f"{pipeline_id} is not wired"
        for section in used:
            for component in pipeline.get(section, []):
                where = "connectors" if component in config.get("connectors", {}) else section
                assert component in config.get(where, {}), f"{pipeline_id} uses undefined {section[:-1]} {component}"
                used[section].add(component)
    for section in ("receivers", "processors", "exporters"):
        unused = set(config.get(section, {})) - used[section]
        assert not unused, f"{section} defined but never used: {unused}"
    for connector in config.get("connectors", {}):
        takes = {component_type(p) for p, v in pipelines.items() if connector in v.get("exporters", [])}
        gives = {component_type(p) for p, v in pipelines.items() if connector in v.get("receivers", [])}
        assert takes and gives, f"connector {connector} must be an exporter of one pipeline and a receiver of another"
        expected = CONNECTOR_SIGNALS[component_type(connector)]
        assert (takes, gives) == ({expected[0]}, {expected[1]}) if expected else takes == gives, connector
    assert set(config["service"].get("extensions", [])) <= set(config.get("extensions", {}))


def test_current_component_names() -> None:
    config = collector_config(azure_monitor=True)
    sections = ("receivers", "processors", "exporters", "connectors")
    types = {component_type(k) for section in sections for k in config[section]}
    assert not types & DEPRECATED_TYPES
    assert "otlp" not in {component_type(e) for e in config["exporters"]}, "the otlp exporter is now otlp_grpc"
    assert {"span_metrics", "otlp_grpc", "prometheus", "tail_sampling", "memory_limiter", "batch"} <= types
    assert "azure_monitor" in types


def test_receiver_takes_otlp_grpc_and_http() -> None:
    protocols = collector_config()["receivers"]["otlp"]["protocols"]
    assert protocols["grpc"]["endpoint"].endswith(":4317") and protocols["http"]["endpoint"].endswith(":4318")


def test_memory_limiter_first_and_span_metrics_see_every_span_before_sampling() -> None:
    config = collector_config()
    for pipeline in config["service"]["pipelines"].values():
        processors = pipeline.get("processors", [])
        if any(component_type(r) == "otlp" for r in pipeline["receivers"]):
            assert processors[:1] == ["memory_limiter"], pipeline
    assert span_metrics_connectors_fed_by_otlp(config) == ["span_metrics"]


def test_span_metrics_buckets_reach_past_the_execution_limit_with_low_cardinality_dimensions() -> None:
    span_metrics = collector_config()["connectors"]["span_metrics"]
    assert span_metrics["namespace"] == "traces.span.metrics"
    buckets = [_ms(b) for b in span_metrics["histogram"]["explicit"]["buckets"]]
    assert buckets == sorted(buckets) and buckets[-1] > 220_000
    names = {d["name"] for d in span_metrics["dimensions"]}
    assert {"http.route", "http.response.status_code", "deployment.environment.name"} <= names
    assert not names & {"url.path", "url.full", "url.query", "http.target", "http.url", c.ATTR_OPERATION_ID}
    assert span_metrics["exemplars"]["enabled"] is True
    assert max(c.DURATION_BUCKETS_S) > 220  # the services' own histograms too


def test_tail_sampling_keeps_errors_and_slow_traces_and_is_off_by_default() -> None:
    config = collector_config()
    policies = {p["type"]: p for p in config["processors"]["tail_sampling"]["policies"]}
    assert policies["status_code"]["status_code"]["status_codes"] == ["ERROR"]
    assert int(policies["latency"]["latency"]["threshold_ms"]) > 0
    assert float(policies["probabilistic"]["probabilistic"]["sampling_percentage"]) == 100
    sampled = [p for p in config["service"]["pipelines"].values() if "tail_sampling" in p.get("processors", [])]
    assert [p["exporters"] for p in sampled] == [["otlp_grpc/jaeger"]]
    with_azure = collector_config(azure_monitor=True)["service"]["pipelines"]["traces/sampled"]
    assert with_azure["exporters"] == ["otlp_grpc/jaeger", "azure_monitor"]


def test_azure_monitor_exporter_only_with_its_overlay() -> None:
    assert "azure_monitor" not in collector_config()["exporters"]
    exporter = collector_config(azure_monitor=True)["exporters"]["azure_monitor"]
    assert exporter["connection_string"] == ""  # ${env:APPLICATIONINSIGHTS_CONNECTION_STRING}, unset here


def test_dashboards_rules_and_jaeger_query_only_what_the_collector_makes_of_the_chain_spans() -> None:
    found = problems(all_queries(), collector_series(chain_spans.conventions_run()))
    assert not found, "\n".join(found)


def test_the_same_against_a_recorded_end_to_end_run() -> None:
    if not chain_spans.RECORDING.exists():
        pytest.skip(f"no recording at {chain_spans.RECORDING} yet")
    spans = chain_spans.as_in_compose(chain_spans.read_otlp_json_lines(chain_spans.RECORDING))
    assert spans, "the recording has no spans"
    found = problems(all_queries(), collector_series(spans), tolerate=OPTIONAL_HOPS)
    assert not found, "\n".join(found)


@pytest.mark.parametrize(
    "query",
    [
        'traces_span_metrics_calls_total{service_name="core_api"}',  # package name, not service.name
        "traces_span_metrics_duration_seconds_bucket",  # the connector's unit is ms
        "traces_spanmetrics_calls_total",  # legacy name
        'traces_span_metrics_calls_total{span_kind="SERVER"}',
        'traces_span_metrics_calls_total{status_code="ERROR"}',
        "sum by (url_path) (rate(traces_span_metrics_calls_total[5m]))",  # raw paths are not a dimension
        'traces_span_metrics_calls_total{http_route=~".*00000000-0000-0000-0000-000000000001.*"}',
        f'traces_span_metrics_calls_total{{service_name="{c.DYNAMIC_SESSIONS}", span_name="POST /code/execute"}}',
        'traces_span_metrics_calls_total{service_name="core-api"}',  # the deployment name, not service.name
        f'traces_span_metrics_calls_total{{server_address="{c.CORE_API}"}}',  # a host is the deployment name
        "foundationallm_code_execution_duration_bucket",  # no unit suffix
        "foundationallm_operations",  # no _total
        'foundationallm_code_session_acquisitions_total{result="hot"}',
        'ALERTS{alertname="NoSuchAlert"}',
    ],
)
def test_the_checker_rejects_what_is_not_produced(query: str) -> None:
    assert problems([("wrong", query)], collector_series(chain_spans.conventions_run()))


def test_no_label_carries_an_id_or_a_raw_path() -> None:
    ids = (chain_spans.INSTANCE, chain_spans.OPERATION, chain_spans.SESSION)
    for series in collector_series(chain_spans.conventions_run()):
        for label, values in series.labels.items():
            assert label not in {"url_path", "url_full", "foundationallm_operation_id"}
            if values is not ANY:
                assert not any(i in v for v in values for i in ids), (series.name, label, values)


def test_own_metric_names_follow_the_otel_to_prometheus_rules() -> None:
    names = {s.name for s in service_metric_series(collector_config())}
    assert names == {
        "foundationallm_code_execution_duration_seconds_bucket",
        "foundationallm_code_execution_duration_seconds_sum",
        "foundationallm_code_execution_duration_seconds_count",
        "foundationallm_code_session_acquisitions_total",
        "foundationallm_code_session_oom_kills_total",
        "foundationallm_code_session_throttled_executions_total",
        "foundationallm_operation_duration_seconds_bucket",
        "foundationallm_operation_duration_seconds_sum",
        "foundationallm_operation_duration_seconds_count",
        "foundationallm_operations_total",
    }
    exporter = collector_config()["exporters"]["prometheus"]
    operations = prometheus_names(c.METRIC_OPERATIONS, "{operation}", "counter", exporter)
    assert operations == ["foundationallm_operations_total"]
    assert prometheus_names("http.server.request.duration", "s", "histogram", exporter)[0] == (
        "http_server_request_duration_seconds_bucket"
    )
