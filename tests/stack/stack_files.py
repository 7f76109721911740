"""Loading the stack's files, and every PromQL query the dashboards, alert rules and Jaeger SPM run."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from telemetry import conventions as c
from tests.stack import promql
from tests.stack.spanmetrics_model import ANY, Series, Span, resolve_env, service_metric_series, span_metric_series

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
COMPOSE_AZURE = ROOT / "deploy" / "docker-compose.azure-monitor.yml"
COLLECTOR = ROOT / "otel-collector.yaml"
COLLECTOR_AZURE = ROOT / "deploy" / "otel-collector.azure-monitor.yaml"
JAEGER = ROOT / "deploy" / "jaeger.yaml"
PROMETHEUS = ROOT / "deploy" / "prometheus.yml"
RULES = ROOT / "dashboards" / "prometheus" / "alerts.yml"
RULE_TESTS = ROOT / "dashboards" / "prometheus" / "alerts_test.yml"
GRAFANA = ROOT / "dashboards" / "grafana"
GRAFANA_PROVISIONING = ROOT / "dashboards" / "grafana-provisioning"
AZURE = ROOT / "dashboards" / "azure-monitor"


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def merge(base: Any, overlay: Any) -> Any:
    """Maps merge key by key, anything else is replaced: the collector's (and compose's env) --config merge."""
    if isinstance(base, dict) and isinstance(overlay, dict):
        return {k: merge(base[k], v) if k in base else v for k, v in overlay.items()} | {
            k: v for k, v in base.items() if k not in overlay
        }
    return overlay


def collector_config(azure_monitor: bool = False) -> dict[str, Any]:
    config = load_yaml(COLLECTOR)
    if azure_monitor:
        config = merge(config, load_yaml(COLLECTOR_AZURE))
    return resolve_env(config, {})


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in load_yaml(RULES)["groups"] for rule in group["rules"] if "alert" in rule]


def dashboards() -> dict[str, dict[str, Any]]:
    return {path.name: json.loads(path.read_text()) for path in sorted(GRAFANA.glob("*.json"))}


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])  # panels of a collapsed row


def dashboard_queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, PromQL) of every panel target and every query variable; label_values() read as its selector."""
    for panel in panels(dashboard):
        for t in panel.get("targets", []):
            if t.get("expr"):
                yield f"{dashboard['uid']} panel {panel['id']} {panel['title']!r}", t["expr"]
    for var in dashboard.get("templating", {}).get("list", []):
        if var.get("type") == "query":
            text = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            yield f"{dashboard['uid']} variable {var['name']}", label_values_as_promql(text)


def label_values_as_promql(text: str) -> str:
    """``label_values(sel, label)`` as ``count by (label) (sel)``, so both the selector and label get checked."""
    text = text.strip()
    if text.startswith("label_values(") and text.endswith(")"):
        inner = text[len("label_values(") : -1]
        selector, _, label = inner.rpartition(",")
        return f"count by ({label.strip()}) ({selector.strip()})"
    return text


def jaeger_spm_queries() -> list[tuple[str, str]]:
    """The PromQL Jaeger's Monitor tab sends (metricstore reader), with the names its config implies."""
    prom = load_yaml(JAEGER)["extensions"]["jaeger_storage"]["metric_backends"]
    (backend,) = [b["prometheus"] for b in prom.values()]
    ns = backend.get("metric_namespace", "traces_span_metrics")
    calls = f"{ns}_calls" + ("_total" if backend.get("normalize_calls") else "")
    unit = {"ms": "milliseconds", "s": "seconds"}[backend.get("latency_unit", "ms")]
    bucket = f"{ns}_duration" + (f"_{unit}" if backend.get("normalize_duration") else "") + "_bucket"
    sel = f'service_name=~"{c.CORE_API}", span_kind=~"SPAN_KIND_SERVER"'
    err = f'{sel}, status_code="STATUS_CODE_ERROR"'
    by = "by (service_name, span_name)"
    return [
        ("jaeger latencies", f"histogram_quantile(0.95, sum(rate({bucket}{{{sel}}}[10m])) by (service_name, le))"),
        ("jaeger calls", f"sum(rate({calls}{{{sel}}}[10m])) {by}"),
        ("jaeger errors", f"sum(rate({calls}{{{err}}}[10m])) {by}"),
    ]


def alert_series() -> list[Series]:
    """ALERTS and ALERTS_FOR_STATE, which Prometheus itself writes for the rules of alerts.yml."""
    out = []
    for rule in alert_rules():
        query = promql.parse(rule["expr"])
        labels: dict[str, Any] = {"alertname": frozenset({rule["alert"]})}
        labels |= {k: frozenset({str(v)}) for k, v in (rule.get("labels") or {}).items()}
        labels |= {name: ANY for name in query.grouping_labels - {"le"}}
        if "absent_over_time" in rule["expr"]:
            labels |= {m.label: frozenset({m.value}) for m in query.selectors[0].matchers if m.op == "="}
        out.append(Series("ALERTS_FOR_STATE", dict(labels)))
        out.append(Series("ALERTS", labels | {"alertstate": frozenset({"pending", "firing"})}))
    return out


def all_queries() -> list[tuple[str, str]]:
    queries = [(f"rule {r['alert']}", r["expr"]) for r in alert_rules()]
    for board in dashboards().values():
        queries += list(dashboard_queries(board))
    return queries + jaeger_spm_queries()


def collector_series(spans: list[Span]) -> list[Series]:
    """What Prometheus holds once the collector saw ``spans``: span metrics, the services' own metrics, ALERTS."""
    config = collector_config()
    return span_metric_series(config, spans) + service_metric_series(config) + alert_series()


def problems(
    queries: list[tuple[str, str]], series: list[Series], tolerate: dict[str, set[str]] | None = None
) -> list[str]:
    """What the queries ask for that the series do not have: unknown metrics, unmatched selectors, labels."""
    from tests.stack.spanmetrics_model import label_names, selector_matches

    found = []
    for where, expr in queries:
        query = promql.parse(expr)
        known_labels: set[str] = set()
        for selector in query.selectors:
            if selector.metric is None:
                found.append(f"{where}: selector without a metric name: {selector}")
                continue
            names = label_names(series, selector.metric)
            if not names:
                found.append(f"{where}: no such metric {selector.metric}")
                continue
            known_labels |= names
            for m in selector.matchers:
                if m.label not in names and not (m.op in {"=~", "!~"} and m.value in {".*", ""}):
                    found.append(f"{where}: {selector.metric} has no label {m.label}")
            if not selector_matches(selector, series, tolerate):
                found.append(f"{where}: nothing produced matches {selector}")
        for label in sorted(query.grouping_labels - known_labels):
            found.append(f"{where}: groups by {label}, which none of its metrics has")
    return found
