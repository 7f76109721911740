"""Azure Monitor: the same alerts as the Prometheus rules, as log search alert rules over KQL; and the
latency / trace queries. No Azure here: the Bicep and KQL are checked for structure and names."""

from __future__ import annotations

import re

from telemetry import conventions as c
from tests.stack.stack_files import AZURE, alert_rules

BICEP = (AZURE / "alerts.bicep").read_text()
TABLES = {"AppRequests", "AppDependencies", "AppExceptions", "AppTraces"}
ATTRIBUTES = {v for k, v in vars(c).items() if k.startswith("ATTR_")}


def _bicep_alerts() -> list[dict[str, str]]:
    body = BICEP.split("var alerts = [", 1)[1].split("\n]\n", 1)[0]
    alerts = []
    for block in re.findall(r"\n  \{\n(.*?)\n  \}", body, re.S):
        fields = dict(re.findall(r"^    (\w+): (.+)$", block, re.M))
        alerts.append(fields)
    return alerts


def _kql_files() -> list:
    return sorted(AZURE.glob("**/*.kql"))


def test_bicep_has_every_prometheus_alert() -> None:
    names = [a["name"].strip("'") for a in _bicep_alerts()]
    assert sorted(names) == sorted({r["alert"] for r in alert_rules()})
    assert "'Microsoft.Insights/scheduledQueryRules@" in BICEP and "kind: 'LogAlert'" in BICEP
    for field in ("evaluationFrequency", "windowSize", "failingPeriods", "metricMeasureColumn", "scopes"):
        assert f"{field}:" in BICEP


def test_each_alert_query_exists_and_returns_its_measure_and_dimensions() -> None:
    for alert in _bicep_alerts():
        path = re.fullmatch(r"loadTextContent\('([^']+)'\)", alert["query"]).group(1)  # type: ignore[union-attr]
        kql = (AZURE / path).read_text()
        assert path == f"alerts/{alert['name'].strip(chr(39))}.kql"
        measure = alert["measure"].strip("'")
        if measure:
            assert re.search(rf"\b{measure} =", kql), f"{path} does not compute {measure}"
        else:
            assert alert["aggregation"] == "'Count'"
        for dim in re.findall(r"name: '(\w+)'", alert["dimensions"]):
            assert re.search(rf"\b{dim}\b", kql), f"{path} has no column {dim}"
        assert re.search(r"ago\(", kql) is None, f"{path}: the rule's windowSize sets the time range"


def test_kql_uses_application_insights_tables_and_the_chain_names() -> None:
    for path in _kql_files():
        kql = path.read_text()
        tables = set(re.findall(r"\b(App[A-Z][A-Za-z]+)\b", kql)) - {"AppRoleName"}
        assert tables and tables <= TABLES, f"{path.name}: {tables - TABLES}"
        for key in re.findall(r'Properties\["([^"]+)"\]', kql):
            assert key in ATTRIBUTES, f"{path.name}: {key} is not a conventions.py attribute"
        for name in re.findall(r'\bName (?:==|endswith) "([^"]+)"', kql):
            assert name in {c.SPAN_CODE_EXECUTE, f"POST {c.ROUTE_ASYNC_COMPLETIONS}"} or c.ROUTE_EXECUTE_CODE.endswith(
                name
            ), f"{path.name}: {name} is no span of the chain"
        # Cloud role names are "<service.namespace>.<service.name>": strip the namespace, never match exactly.
        assert 'AppRoleName ==' not in kql


def test_queries_for_latency_and_for_one_trace() -> None:
    trace = (AZURE / "queries" / "trace-by-operation-id.kql").read_text()
    assert "OperationId == TraceId" in trace and "union AppRequests, AppDependencies" in trace
    latency = (AZURE / "queries" / "latency-by-hop.kql").read_text()
    assert all(f"percentilew(DurationMs, ItemCount, {q})" in latency for q in (50, 95, 99))
    code = (AZURE / "queries" / "code-execution-latency.kql").read_text()
    assert "OverheadMs = CallMs - RunMs" in code and "by Provider, Outcome" in code
