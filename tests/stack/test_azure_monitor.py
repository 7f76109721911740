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
            spans = {c.SPAN_CODE_EXECUTE, f"POST {c.ROUTE_ASYNC_COMPLETIONS}", c.SPAN_FLLM_CORE_START_COMPLETION}
            assert name in spans or c.ROUTE_EXECUTE_CODE.endswith(name), f"{path.name}: {name} is no span of the chain"
        # Cloud role names are "<service.namespace>.<service.name>": strip the namespace, never match exactly.
        assert 'AppRoleName ==' not in kql and "AppRoleName endswith" not in kql
        for hop in re.findall(r'\bHop == "([^"]+)"', kql):
            assert hop in c.CHAIN_SERVICES, f"{path.name}: {hop} is no service.name of the chain"


def test_kql_hop_is_the_service_name_from_either_exporter() -> None:
    # What both Azure Monitor exporters send as the cloud role: ours (_get_cloud_role of the Python exporter)
    # and FoundationaLLM's .NET one concatenate "<service.namespace>.<service.name>".
    from azure.monitor.opentelemetry.exporter._utils import _get_cloud_role
    from opentelemetry.sdk.resources import Resource

    from telemetry.setup import TelemetrySettings, resource_for

    ours = _get_cloud_role(resource_for(TelemetrySettings(service_name=c.CORE_API, data_dir=AZURE)))
    assert ours == f"{c.SERVICE_NAMESPACE}.{c.CORE_API}" == "FoundationaLLM.CoreAPI"
    assert _get_cloud_role(Resource({"service.name": "CoreAPI"})) == "CoreAPI"
    for path in _kql_files():
        for pattern in re.findall(r'replace_regex\(AppRoleName, @"([^"]+)", ""\)', path.read_text()):
            assert re.sub(pattern, "", ours) == re.sub(pattern, "", "CoreAPI") == c.CORE_API, path.name
    assert "isnotempty(Url)" in (AZURE / "alerts" / "HopServerErrorRatioHigh.kql").read_text()  # not activities


def test_queries_for_latency_and_for_one_trace() -> None:
    trace = (AZURE / "queries" / "trace-by-operation-id.kql").read_text()
    assert "OperationId == TraceId" in trace and "union AppRequests, AppDependencies" in trace
    latency = (AZURE / "queries" / "latency-by-hop.kql").read_text()
    assert all(f"percentilew(DurationMs, ItemCount, {q})" in latency for q in (50, 95, 99))
    code = (AZURE / "queries" / "code-execution-latency.kql").read_text()
    assert "OverheadMs = CallMs - RunMs" in code and "by Provider, Outcome" in code
    limits = (AZURE / "queries" / "code-session-limits.kql").read_text()
    read = set(re.findall(r'Properties\["([^"]+)"\]', limits))
    written = {c.ATTR_CODE_SESSION_PROVIDER, c.ATTR_CODE_OOM_KILLS, c.ATTR_CODE_CPU_THROTTLED, c.ATTR_CODE_CPU_TIME,
               c.ATTR_CODE_MEMORY_PEAK}  # the attributes the executor writes on code.execute
    assert read == written, read
    assert f'Name == "{c.SPAN_CODE_EXECUTE}"' in limits
