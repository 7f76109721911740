"""Spans of one completion through the chain: hand-built from telemetry/conventions.py, or read from a
recording of a real run (OTLP JSON lines, as telemetry/otlp_json.py writes them)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from services.registry import HOPS
from telemetry import conventions as c
from tests.stack.spanmetrics_model import SPAN_KINDS, Span

RECORDING = Path(__file__).resolve().parents[1] / "fixtures" / "chain-run.traces.jsonl"
INSTANCE = "00000000-0000-0000-0000-000000000001"
OPERATION = "7f1c0e4e-2a4b-4d43-9a57-3c2f7f3f9b11"
SESSION = "a0f3a5c1d2"
CLAIM_ROUTE = c.ROUTE_OPERATION + "/claim"  # a replica of LangChain takes the operation (not in the original)
STATUSES = ("STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR")
# A service's host in compose and Kubernetes (its deployment name: server.address of the calls to it) and port.
HOST = {hop.service_name: hop.name for hop in HOPS.values()}
PORT = {hop.service_name: hop.port for hop in HOPS.values()}


def _resource(service: str) -> dict[str, Any]:
    return {
        "service.name": service,
        "service.namespace": c.SERVICE_NAMESPACE,
        "service.instance.id": f"{service}-1",
        "deployment.environment.name": "docker",
        c.ATTR_INSTANCE_ID: INSTANCE,
    }


def _server(service: str, method: str, route: str, status: int = 200, **attrs: Any) -> Span:
    path = route.replace("{instanceId}", INSTANCE).replace("{operationId}", OPERATION).replace("{sessionId}", SESSION)
    attributes = {
        "http.request.method": method, "http.route": route, "url.path": path, "url.scheme": "http",
        "http.response.status_code": status, c.ATTR_INSTANCE_ID: INSTANCE, c.ATTR_OPERATION_ID: OPERATION, **attrs,
    }
    return Span(service, f"{method} {route}", "SPAN_KIND_SERVER", attributes=attributes, resource=_resource(service))


def _client(service: str, method: str, target: str, path: str, status: int = 200) -> Span:
    host, port = HOST[target], PORT[target]
    attributes = {
        "http.request.method": method, "server.address": host, "server.port": port,
        "url.full": f"http://{host}:{port}{path.replace('{instanceId}', INSTANCE)}",
        "http.response.status_code": status,
    }
    return Span(service, method, "SPAN_KIND_CLIENT", attributes=attributes, resource=_resource(service))


def _internal(service: str, name: str, **attrs: Any) -> Span:
    return Span(service, name, "SPAN_KIND_INTERNAL", attributes=attrs, resource=_resource(service))


def _activity(service: str, name: str) -> Span:
    """FoundationaLLM's own activities: SERVER spans without HTTP attributes, inside a request's span."""
    return Span(service, name, "SPAN_KIND_SERVER", attributes={c.ATTR_OPERATION_ID: OPERATION},
                resource=_resource(service))


def conventions_run() -> list[Span]:
    """One completion on each code session provider, gatekeeper required, as conventions.py draws it (the
    chain tier checks the same queries against a live chain's spans: test_gatekeeper_and_backends.py)."""
    execute = {
        c.ATTR_GEN_AI_OPERATION: "execute_tool", c.ATTR_GEN_AI_TOOL_NAME: "code_interpreter",
        c.ATTR_CODE_STATUS: "Succeeded", c.ATTR_CODE_EXECUTION_MS: 812,
    }
    spans = [
        _internal(c.PORTAL, c.SPAN_PORTAL_SUBMIT),
        _client(c.PORTAL, "POST", c.CORE_API, c.ROUTE_ASYNC_COMPLETIONS, 202),
        _internal(c.PORTAL, c.SPAN_PORTAL_WAIT),
        _internal(c.PORTAL, c.SPAN_PORTAL_POLL, **{c.ATTR_POLL_COUNT: 3}),
        _client(c.PORTAL, "GET", c.CORE_API, c.ROUTE_COMPLETION_STATUS),
        _server(c.CORE_API, "POST", c.ROUTE_ASYNC_COMPLETIONS, 202),
        _activity(c.CORE_API, c.SPAN_FLLM_CORE_START_COMPLETION),
        _server(c.CORE_API, "GET", c.ROUTE_COMPLETION_STATUS),
        _internal(c.CORE_API, c.SPAN_CORE_POLL),
        _client(c.CORE_API, "POST", c.GATEKEEPER_API, c.ROUTE_ASYNC_COMPLETIONS, 202),
        _client(c.CORE_API, "GET", c.ORCHESTRATION_API, c.ROUTE_COMPLETION_STATUS),
        _server(c.GATEKEEPER_API, "POST", c.ROUTE_ASYNC_COMPLETIONS, 202),
        _internal(c.GATEKEEPER_API, c.SPAN_GATEKEEPER_CHECK, **{c.ATTR_GATEKEEPER_DECISION: "allowed"}),
        _client(c.GATEKEEPER_API, "POST", c.ORCHESTRATION_API, c.ROUTE_ASYNC_COMPLETIONS, 202),
        _server(c.ORCHESTRATION_API, "POST", c.ROUTE_ASYNC_COMPLETIONS, 202),
        _internal(c.ORCHESTRATION_API, c.SPAN_ORCHESTRATION_BUILD, **{c.ATTR_AGENT_NAME: "code-interpreter"}),
        _client(c.ORCHESTRATION_API, "POST", c.CONTEXT_API, c.ROUTE_CODE_SESSIONS),
        _client(c.ORCHESTRATION_API, "POST", c.STATE_API, c.ROUTE_OPERATION),
        _client(c.ORCHESTRATION_API, "POST", c.LANGCHAIN_API, c.ROUTE_ASYNC_COMPLETIONS, 202),
        _server(c.ORCHESTRATION_API, "GET", c.ROUTE_COMPLETION_STATUS),
        _client(c.ORCHESTRATION_API, "GET", c.STATE_API, c.ROUTE_OPERATION),
        _server(c.LANGCHAIN_API, "POST", c.ROUTE_ASYNC_COMPLETIONS, 202),
        _client(c.LANGCHAIN_API, "POST", c.STATE_API, CLAIM_ROUTE),
        _client(c.LANGCHAIN_API, "PUT", c.STATE_API, c.ROUTE_OPERATION),
        _activity(c.LANGCHAIN_API, c.SPAN_FLLM_LANGCHAIN_SUBMIT),
        _activity(c.LANGCHAIN_API, c.SPAN_LANGCHAIN_WORKFLOW),
        _internal(c.LANGCHAIN_API, f"{c.SPAN_CHAT_PREFIX} local-deterministic"),
        _internal(c.LANGCHAIN_API, c.SPAN_LANGCHAIN_TOOL_CALL, **{c.ATTR_GEN_AI_TOOL_NAME: "code_interpreter"}),
        _client(c.LANGCHAIN_API, "POST", c.CONTEXT_API, c.ROUTE_EXECUTE_CODE),
        _internal(c.LANGCHAIN_API, c.SPAN_LANGCHAIN_WRITE_RESULT),
        _server(c.STATE_API, "GET", c.ROUTE_OPERATION),
        _server(c.STATE_API, "POST", c.ROUTE_OPERATION),
        _server(c.STATE_API, "POST", CLAIM_ROUTE),
        _server(c.STATE_API, "PUT", c.ROUTE_OPERATION, **{c.ATTR_OPERATION_STATUS: "Completed"}),
        _server(c.CONTEXT_API, "POST", c.ROUTE_CODE_SESSIONS),
        _server(c.CONTEXT_API, "POST", c.ROUTE_EXECUTE_CODE),
    ]
    for provider_service, provider, route in (
        (c.DYNAMIC_SESSIONS, "AzureContainerAppsCodeInterpreter", "/executions"),
        (c.CODE_SESSION_API, "AzureContainerAppsCustomContainer", "/code/execute"),
    ):
        spans += [
            _client(c.CONTEXT_API, "POST", provider_service, route),
            _server(provider_service, "POST", route),
            _internal(provider_service, c.SPAN_CODE_SESSION_ACQUIRE, **{c.ATTR_CODE_SESSION_ACQUIRE: "warm"}),
            _internal(provider_service, c.SPAN_CODE_EXECUTE, **{c.ATTR_CODE_SESSION_PROVIDER: provider, **execute}),
        ]
    return spans


# --- a recording ---

def _value(node: dict[str, Any]) -> Any:
    for key in ("stringValue", "boolValue", "doubleValue"):
        if key in node:
            return node[key]
    if "intValue" in node:
        return int(node["intValue"])
    if "arrayValue" in node:
        return [_value(v) for v in node["arrayValue"].get("values", [])]
    return None


def _attributes(items: list[dict[str, Any]] | None) -> dict[str, Any]:
    return {item["key"]: _value(item.get("value", {})) for item in items or []}


def read_otlp_json_lines(path: Path) -> list[Span]:
    spans = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        for resource_spans in json.loads(line).get("resourceSpans", []):
            resource = _attributes(resource_spans.get("resource", {}).get("attributes"))
            if resource.get("service.name") in c.SERVICE_NAMES_BEFORE:  # recorded before the services' renaming
                resource |= {"service.name": c.service_name_now(str(resource["service.name"])),
                             "service.namespace": c.SERVICE_NAMESPACE}
            for scope_spans in resource_spans.get("scopeSpans", []):
                for span in scope_spans.get("spans", []):
                    spans.append(Span(
                        service=str(resource.get("service.name", "unknown_service")),
                        name=span["name"],
                        kind=SPAN_KINDS[int(span.get("kind", 0))],
                        status=STATUSES[int(span.get("status", {}).get("code", 0))],
                        attributes=_attributes(span.get("attributes")),
                        resource=resource,
                        span_id=span.get("spanId", ""),
                        parent_id=span.get("parentSpanId", ""),
                    ))
    return spans


def as_in_compose(spans: list[Span]) -> list[Span]:
    """A recording made on loopback (random ports) as compose would see it: each client span's
    server.address is the host of the service whose server span it called, i.e. that service's compose name."""
    callee = {s.parent_id: HOST[s.service] for s in spans if s.kind == "SPAN_KIND_SERVER" and s.parent_id}
    return [
        replace(s, attributes={**s.attributes, "server.address": callee[s.span_id]})
        if s.kind == "SPAN_KIND_CLIENT" and s.span_id in callee else s
        for s in spans
    ]
