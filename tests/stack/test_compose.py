"""docker-compose.yml against the Compose specification, and its wiring: hops, ports, telemetry, images."""

from __future__ import annotations

import json
import re
from graphlib import TopologicalSorter
from typing import Any
from urllib.parse import urlparse

import pytest
from compose_spec import PyCompose

from services.common.settings import API_KEY_ENV, SERVICE_PORTS, deployed_name, url_env
from services.context_api.config import parse_endpoints
from tests.stack.stack_files import (
    COMPOSE,
    COMPOSE_AZURE,
    GRAFANA_PROVISIONING,
    JAEGER,
    PROMETHEUS,
    ROOT,
    collector_config,
    load_yaml,
    merge,
)

CHAIN = {deployed_name(pkg): pkg for pkg in SERVICE_PORTS}  # compose services by their deployment names
CONTEXT_ENDPOINT_ENV = {
    "FLLM_CODE_INTERPRETER_ENDPOINTS": "dynamic-sessions",
    "CONTEXTAPI_CODEEXECUTION_CUSTOMCONTAINER": "code-session-api",
}
PINNED = re.compile(r"^[\w./-]+:v?\d+\.\d+\.\d+[\w.-]*$")


def _interpolate(value: str) -> str:
    """Compose's ${VAR:-default} / ${VAR:?error} with nothing set: the default (or '')."""
    return re.sub(r"\$\{[A-Za-z_][A-Za-z0-9_]*(?::?-([^}]*))?(?::?\?[^}]*)?\}", lambda m: m.group(1) or "", value)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_yaml(COMPOSE)  # pyyaml resolves the << merge keys as compose does


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    assert isinstance(env, dict), "environment as a map"
    return {k: _interpolate(str(v)) for k, v in env.items()}


def _published(service: dict[str, Any]) -> dict[int, int]:
    ports = {}
    for spec in service.get("ports", []):
        *_, host, container = str(spec).split(":")
        ports[int(container)] = int(host)
    return ports


@pytest.mark.parametrize("overlay", [False, True], ids=["base", "with-azure-monitor"])
def test_validates_against_the_compose_specification(compose: dict[str, Any], overlay: bool) -> None:
    document = merge(compose, load_yaml(COMPOSE_AZURE)) if overlay else compose
    parsed = PyCompose.from_json(json.dumps(document))
    parsed.validate()
    parsed.to_spec()  # the pydantic model of the schema as well


def test_the_validator_catches_a_wrong_key() -> None:
    with pytest.raises(ValueError):
        PyCompose.from_yaml("services:\n  a:\n    image: x:1.0.0\n    helthcheck: {}\n").validate()


def test_every_hop_runs_its_package_on_its_design_port(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, pkg in CHAIN.items():
        service = services[name]
        assert service["command"] == ["python", "-m", f"services.{pkg}"]
        assert _published(service) == {SERVICE_PORTS[pkg]: SERVICE_PORTS[pkg]}
        assert all(str(p).startswith("127.0.0.1:") for p in service["ports"]), "publish on loopback only"
        assert _env(service)["FLLM_HOST"] == "0.0.0.0"


def _check_url(url: str, services: dict[str, Any], where: str) -> None:
    parsed = urlparse(url)
    assert parsed.scheme == "http" and parsed.hostname in services, f"{where}: {url} is no service"
    assert parsed.port == SERVICE_PORTS[CHAIN[parsed.hostname]], f"{where}: {url} has the wrong port"


def test_next_hop_urls_and_keys_point_at_existing_services(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in CHAIN:
        env = _env(services[name])
        for pkg in SERVICE_PORTS:  # none may fall back to its 127.0.0.1 default
            _check_url(env[url_env(pkg)], services, f"{name} {url_env(pkg)}")
        extra = {k for k in env if re.fullmatch(r"FLLM_\w+_URL", k)} - {url_env(p) for p in SERVICE_PORTS}
        assert extra <= {"FLLM_JAEGER_URL"}, f"{name}: unknown URL variables {extra}"
        assert urlparse(env["FLLM_JAEGER_URL"]).port == _published(services["jaeger"])[16686]  # the browser's view
        assert all(env[var] for var in API_KEY_ENV.values()), f"{name}: an API key is empty"
    context_env = _env(services["context-api"])
    for var, provider in CONTEXT_ENDPOINT_ENV.items():
        endpoints = parse_endpoints(context_env[var], var)  # as the Context API reads it
        assert endpoints["CSharp"] == [] and endpoints["Python"]
        for url in endpoints["Python"]:
            _check_url(url, services, f"context-api {var}")
            assert urlparse(url).hostname == provider


def test_collector_endpoint_set_everywhere(compose: dict[str, Any]) -> None:
    http = collector_config()["receivers"]["otlp"]["protocols"]["http"]["endpoint"]
    collector = compose["services"]["otel-collector"]
    for name in CHAIN:
        env = _env(compose["services"][name])
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == f"http://otel-collector:{http.rsplit(':', 1)[1]}"
        assert env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf"
        assert env["FLLM_TELEMETRY_FILE"] == "off"
        assert "otel-collector" in compose["services"][name]["depends_on"]
    assert _published(collector) == {4317: 4317, 4318: 4318}


def test_images_pinned_and_ours_built_from_the_dockerfile(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        assert PINNED.match(service["image"]), f"{name}: {service['image']} is not a pinned version"
        if name in CHAIN:
            assert service["build"] == {"context": ".", "dockerfile": "Dockerfile"}
    dockerfile = (ROOT / "Dockerfile").read_text()
    bases = re.findall(r"^FROM\s+(\S+)", dockerfile, re.M)
    assert bases and all(PINNED.match(b) for b in bases), bases
    assert re.search(r"^USER\s+(?!root|0\b)\S+", dockerfile, re.M), "the image runs as non-root"
    assert "pip install -c constraints.txt ." in dockerfile
    assert {"!services/", "!telemetry/", "!constraints.txt"} <= set((ROOT / ".dockerignore").read_text().split())


def test_start_order_uses_health_checks_and_has_no_cycle(compose: dict[str, Any]) -> None:
    services = compose["services"]
    graph = {}
    for name, service in services.items():
        depends = service.get("depends_on") or {}
        for target, spec in depends.items():
            assert target in services, f"{name} depends on missing {target}"
            if spec["condition"] == "service_healthy":
                assert "healthcheck" in services[target], f"{target} has no health check to wait for"
        graph[name] = set(depends)
    order = list(TopologicalSorter(graph).static_order()).index
    assert order("state-api") < order("langchain-api") < order("orchestration-api")
    assert order("dynamic-sessions") < order("context-api") < order("core-api") < order("portal")
    for name, pkg in CHAIN.items():
        probe = " ".join(services[name]["healthcheck"]["test"])
        assert f"http://127.0.0.1:{SERVICE_PORTS[pkg]}/status" in probe


def test_mounted_files_exist_and_configs_agree(compose: dict[str, Any]) -> None:
    documents = [compose, load_yaml(COMPOSE_AZURE)]
    for doc in documents:
        for service in doc["services"].values():
            for volume in service.get("volumes", []):
                source = volume.split(":")[0]
                if source.startswith("./"):
                    assert (ROOT / source).exists(), f"{source} is mounted but missing"
    prometheus = load_yaml(PROMETHEUS)
    mounts = {v.split(":")[1] for v in compose["services"]["prometheus"]["volumes"]}
    assert set(prometheus["rule_files"]) <= mounts
    scrape = {t for job in prometheus["scrape_configs"] for c in job["static_configs"] for t in c["targets"]}
    exporter_port = collector_config()["exporters"]["prometheus"]["endpoint"].rsplit(":", 1)[1]
    assert f"otel-collector:{exporter_port}" in scrape
    assert next(j for j in prometheus["scrape_configs"] if j["job_name"] == "otel-collector")["honor_labels"]
    assert "--enable-feature=exemplar-storage" in compose["services"]["prometheus"]["command"]
    jaeger_target = collector_config()["exporters"]["otlp_grpc/jaeger"]["endpoint"]
    jaeger = load_yaml(JAEGER)
    assert jaeger_target == "jaeger:" + jaeger["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"].rsplit(":", 1)[1]
    backend = jaeger["extensions"]["jaeger_storage"]["metric_backends"]
    assert [b["prometheus"]["endpoint"] for b in backend.values()] == ["http://prometheus:9090"]
    datasources = load_yaml(GRAFANA_PROVISIONING / "datasources" / "datasources.yaml")["datasources"]
    for ds in datasources:
        host = urlparse(ds["url"])
        assert host.hostname in compose["services"], ds["url"]
