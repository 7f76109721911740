"""Grafana dashboards: they load, their panel ids are unique, and they query only metrics that exist."""

from __future__ import annotations

from typing import Any

import pytest

from telemetry import conventions as c
from tests.stack import chain_spans, promql
from tests.stack.spanmetrics_model import (
    SERVICE_INSTRUMENTS,
    prometheus_names,
    service_metric_series,
    span_metric_series,
)
from tests.stack.stack_files import (
    GRAFANA,
    GRAFANA_PROVISIONING,
    alert_series,
    collector_config,
    dashboard_queries,
    dashboards,
    load_yaml,
    panels,
    problems,
)

BOARDS = dashboards()


def _datasources() -> dict[str, dict[str, Any]]:
    return {d["uid"]: d for d in load_yaml(GRAFANA_PROVISIONING / "datasources" / "datasources.yaml")["datasources"]}


def _exprs(board: dict[str, Any]) -> str:
    return "\n".join(expr for _, expr in dashboard_queries(board))


def test_the_three_dashboards_exist_with_unique_uids() -> None:
    assert set(BOARDS) == {"chain-overview.json", "code-execution.json", "failed-hops.json"}
    uids = [b["uid"] for b in BOARDS.values()]
    assert len(set(uids)) == len(uids)
    provider = load_yaml(GRAFANA_PROVISIONING / "dashboards" / "dashboards.yaml")["providers"][0]
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards" and GRAFANA.is_dir()


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_dashboard_loads_with_unique_panel_ids_and_known_datasources(name: str) -> None:
    board = BOARDS[name]
    assert board["title"] and board["schemaVersion"] >= 36
    ids = [p["id"] for p in panels(board)]
    assert len(ids) == len(set(ids)), f"duplicate panel ids in {name}"
    sources = _datasources()
    for panel in panels(board):
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"]) and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] in sources, f"{name} panel {panel['id']}: unknown datasource"
            promql.parse(target["expr"])
            refs = [t["refId"] for t in panel["targets"]]
            assert len(refs) == len(set(refs))


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_dashboard_queries_only_existing_metrics(name: str) -> None:
    config = collector_config()
    series = span_metric_series(config, chain_spans.conventions_run()) + service_metric_series(config) + alert_series()
    found = problems(list(dashboard_queries(BOARDS[name])), series)
    assert not found, "\n".join(found)


def test_overview_shows_rate_errors_and_percentiles_per_hop() -> None:
    exprs = _exprs(BOARDS["chain-overview.json"])
    for q in ("0.5", "0.95", "0.99"):
        assert f"histogram_quantile({q}, sum by (le, service_name)" in exprs
    assert 'status_code="STATUS_CODE_ERROR"' in exprs and "sum by (service_name, server_address)" in exprs


def test_code_execution_board_has_heatmap_percentiles_by_provider_and_outcome_and_overhead() -> None:
    board = BOARDS["code-execution.json"]
    heatmaps = [p for p in panels(board) if p["type"] == "heatmap"]
    assert heatmaps and heatmaps[0]["targets"][0]["format"] == "heatmap"
    assert "foundationallm_code_execution_duration_seconds_bucket" in heatmaps[0]["targets"][0]["expr"]
    exprs = _exprs(board)
    assert "sum by (le, code_session_provider, outcome)" in exprs
    assert f'span_name="{c.SPAN_CODE_EXECUTE}"' in exprs
    assert f"POST {c.ROUTE_EXECUTE_CODE}" in exprs  # the Context API hop the overhead is measured against
    assert any("overhead" in t["legendFormat"] for p in panels(board) for t in p.get("targets", []))


def test_failed_hops_board_links_to_jaeger_through_exemplars_and_data_links() -> None:
    board = BOARDS["failed-hops.json"]
    assert any(t.get("exemplar") for p in panels(board) for t in p.get("targets", []))
    links = [link["url"] for p in panels(board) for link in p["fieldConfig"]["defaults"].get("links", [])]
    assert links and all(url.startswith("${jaeger_url}/search?service=") for url in links)
    assert "ALERTS_FOR_STATE" in _exprs(board)  # since when
    destinations = _datasources()["prometheus"]["jsonData"]["exemplarTraceIdDestinations"]
    assert {"name": "trace_id", "datasourceUid": "jaeger"} in destinations
    assert any(d.get("url", "").endswith("/trace/$${__value.raw}") for d in destinations)  # $$: not an env var
    assert _datasources()["jaeger"]["type"] == "jaeger"


def test_services_own_metrics_sit_next_to_the_span_metrics() -> None:
    exprs = "\n".join(_exprs(b) for b in BOARDS.values())
    exporter = collector_config()["exporters"]["prometheus"]
    for inst in SERVICE_INSTRUMENTS:
        names = prometheus_names(inst.name, inst.unit, inst.kind, exporter)
        assert any(n in exprs for n in names), f"{inst.name} is on no dashboard"
    assert "traces_span_metrics_calls_total" in exprs


def test_server_span_queries_by_hop_count_http_requests_only() -> None:
    # FoundationaLLM's activities (AsyncCompletions_StartCompletionOperation, langchainapi_*) are SERVER spans
    # inside a request's span: a selector over a hop's SERVER spans that names no span must keep to the
    # HTTP ones (http_route set), or one request counts twice in its rate, errors and latency.
    from tests.stack.stack_files import all_queries

    checked = 0
    for where, expr in all_queries():
        if where.startswith("jaeger"):
            continue  # Jaeger's Monitor tab lists every span name apart
        for selector in promql.parse(expr).selectors:
            matchers = {(m.label, m.op): m.value for m in selector.matchers}
            names_spans = {("span_name", "="), ("span_name", "=~")} & set(matchers)
            if matchers.get(("span_kind", "=")) == "SPAN_KIND_SERVER" and not names_spans:
                assert matchers.get(("http_route", "!=")) == "", f"{where}: {selector}"
                checked += 1
    assert checked >= 10
    series = span_metric_series(collector_config(), chain_spans.conventions_run())
    activities = [s for s in series if s.labels.get("span_name") == frozenset({c.SPAN_FLLM_CORE_START_COMPLETION})]
    assert activities and all("http_route" not in s.labels for s in activities)  # what the filter leaves out
