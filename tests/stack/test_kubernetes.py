"""deploy/kubernetes: each kustomization rendered by a real kustomize (kubectl's), every object validated
against the Kubernetes schemas (kubernetes-validate), and the manifests checked against services/registry.py
and docker-compose.yml."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

import services.code_execution.config  # noqa: F401  (registers CodeExecutionSettings)
from services.common.settings import AzureOpenAISettings, FllmSettings
from services.registry import HOPS, Hop
from tests.stack.stack_files import COLLECTOR, COLLECTOR_AZURE, COMPOSE, GRAFANA, ROOT, load_yaml

KUBERNETES = ROOT / "deploy" / "kubernetes"
KUSTOMIZATIONS = ("base", "overlays/local-observability", "overlays/azure-monitor")
# An older minor still common on AKS, and the newest the validator knows.
VERSIONS = ("1.33.0", kubernetes_validate.utils.latest_version())
# Hops that keep something in their pod: a store (SQLite unless FLLM_DATABASE_URL) or a session's sandbox.
STATEFUL = {"core_api", "state_api", "context_api", "dynamic_sessions", "code_session_api"}
CODE_POOLS = {"dynamic_sessions", "code_session_api"}
# What overlays/azure-monitor expects the operator to create (the README's steps); fllm-local-issuer and
# fllm-database are referenced as optional.
OPERATOR_SECRETS = {"fllm-keys", "fllm-azure-monitor", "grafana-admin"}
Manifest = list[dict[str, Any]]


@pytest.fixture(autouse=True, scope="module")
def _schemas_parsed_once() -> Iterator[None]:
    """kubernetes-validate reads and parses its schema files again for every object (1.4 MB of definitions
    each time): here each file once (this module: 10.6 s -> 2.8 s)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(kubernetes_validate.utils, "schema_contents", cache(kubernetes_validate.utils.schema_contents))
        yield


def _kustomize() -> list[str] | None:
    if kubectl := shutil.which("kubectl"):
        return [kubectl, "kustomize"]
    if kustomize := shutil.which("kustomize"):
        return [kustomize, "build"]
    return None


KUSTOMIZE = _kustomize()
pytestmark = pytest.mark.skipif(KUSTOMIZE is None, reason="no kustomize: neither kubectl nor kustomize on PATH")


def render(directory: Path) -> Manifest:
    assert KUSTOMIZE is not None
    done = subprocess.run([*KUSTOMIZE, "--load-restrictor", "LoadRestrictionsNone", str(directory)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"kustomize {directory}: {done.stderr}"
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


@cache
def rendered(kustomization: str) -> Manifest:
    return render(KUBERNETES / kustomization)


@cache
def with_components(*components: str) -> Manifest:
    """overlays/azure-monitor with components/<name>s, as the README tells AKS users to add them."""
    directory = Path(tempfile.mkdtemp(prefix="fllm-k8s-"))
    try:
        (directory / "kustomization.yaml").write_text(yaml.safe_dump({
            "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
            # kustomize takes no absolute root
            "resources": [os.path.relpath(KUBERNETES / "overlays" / "azure-monitor", directory)],
            "components": [os.path.relpath(KUBERNETES / "components" / c, directory) for c in components]}))
        return render(directory)
    finally:
        shutil.rmtree(directory)


def with_sandbox() -> Manifest:
    return with_components("code-sandbox")


def objects(manifest: Manifest, kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in manifest if o["kind"] == kind}


def generated(manifest: Manifest, kind: str, name: str) -> dict[str, Any]:
    """A generated ConfigMap or Secret by its name before kustomize's hash suffix."""
    found = [o for o in manifest if o["kind"] == kind and o["metadata"]["name"].rsplit("-", 1)[0] == name]
    assert len(found) == 1, f"{kind} {name}: {[o['metadata']['name'] for o in found]}"
    return found[0]


def pod_spec(deployment: dict[str, Any]) -> dict[str, Any]:
    return deployment["spec"]["template"]["spec"]


def containers(deployment: dict[str, Any]) -> Iterator[dict[str, Any]]:
    spec = pod_spec(deployment)
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def hop_deployment(manifest: Manifest, hop: Hop) -> dict[str, Any]:
    return objects(manifest, "Deployment")[hop.name]


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
@pytest.mark.parametrize("version", VERSIONS)
def test_every_object_validates_against_the_kubernetes_schemas(kustomization: str, version: str) -> None:
    manifest = rendered(kustomization)
    assert len(manifest) > len(HOPS) * 2
    for obj in manifest:
        kubernetes_validate.validate(obj, version, strict=True)  # raises, naming the object and the field


COMPONENTS = (("code-sandbox",), ("postgresql",), ("code-sandbox", "postgresql"))


@pytest.mark.parametrize("components", COMPONENTS)
@pytest.mark.parametrize("version", VERSIONS)
def test_the_components_validate(components: tuple[str, ...], version: str) -> None:
    for obj in with_components(*components):
        kubernetes_validate.validate(obj, version, strict=True)


def _renders() -> Iterator[tuple[str, Manifest]]:
    for kustomization in KUSTOMIZATIONS:
        yield kustomization, rendered(kustomization)
    for components in COMPONENTS:
        yield "+".join(components), with_components(*components)


def test_a_deployment_on_a_read_write_once_volume_never_runs_twice() -> None:
    """One replica, Recreate and no HPA: two pods never open one SQLite file, or wait for one disk."""
    for where, manifest in _renders():
        claims = objects(manifest, "PersistentVolumeClaim")
        scaled = {h["spec"]["scaleTargetRef"]["name"] for h in objects(manifest, "HorizontalPodAutoscaler").values()}
        for name, deployment in objects(manifest, "Deployment").items():
            for volume in pod_spec(deployment).get("volumes", []):
                claim = volume.get("persistentVolumeClaim", {}).get("claimName")
                if claim and "ReadWriteOnce" in claims[claim]["spec"]["accessModes"]:
                    assert deployment["spec"]["replicas"] == 1, (where, name)
                    assert deployment["spec"]["strategy"] == {"type": "Recreate"}, (where, name)
                    assert name not in scaled, (where, name)


def test_with_postgresql_the_store_hops_scale_too() -> None:
    manifest = with_components("postgresql")
    scaled = {h["spec"]["scaleTargetRef"]["name"] for h in objects(manifest, "HorizontalPodAutoscaler").values()}
    assert scaled == {hop.name for p, hop in HOPS.items() if p not in CODE_POOLS}
    claims = objects(manifest, "PersistentVolumeClaim")
    assert claims["context-api-data"]["spec"]["accessModes"] == ["ReadWriteMany"]
    assert not {"core-api-data", "state-api-data"} & set(claims)
    for package in STATEFUL - CODE_POOLS:
        spec = hop_deployment(manifest, HOPS[package])["spec"]
        assert "replicas" not in spec and spec["strategy"]["type"] == "RollingUpdate", package


def test_the_validator_catches_a_broken_object() -> None:
    deployment = dict(hop_deployment(rendered("base"), HOPS["core_api"]))
    deployment["spec"] = {**deployment["spec"], "replicas": "one"}
    with pytest.raises(kubernetes_validate.ValidationError, match="replicas"):
        kubernetes_validate.validate(deployment, VERSIONS[-1], strict=True)
    deployment["spec"] = {**deployment["spec"], "replicas": 1, "replica": 1}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, VERSIONS[-1], strict=True)


def test_without_the_load_restrictor_off_kustomize_names_the_reason() -> None:
    """The overlays read the repository's own files from above them: plain `kubectl apply -k` must say why not."""
    assert KUSTOMIZE is not None
    done = subprocess.run([*KUSTOMIZE, str(KUBERNETES / "overlays" / "local-observability")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "is not in or below" in done.stderr


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_every_hop_has_a_deployment_and_a_service_on_its_registry_port(kustomization: str) -> None:
    manifest = rendered(kustomization)
    deployments, services = objects(manifest, "Deployment"), objects(manifest, "Service")
    hop_deployments = {n for n, d in deployments.items()
                       if d["metadata"]["labels"].get("app.kubernetes.io/component") == "hop"}
    assert hop_deployments == {hop.name for hop in HOPS.values()}
    for package, hop in HOPS.items():
        deployment = deployments[hop.name]
        (container,) = pod_spec(deployment)["containers"]
        assert container["command"] == ["python", "-m", f"services.{package}"]
        assert container["ports"] == [{"name": "http", "containerPort": hop.port}]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe]["httpGet"] == {"path": "/status", "port": "http"}, (hop.name, probe)
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
        service = services[hop.name]
        assert service["spec"]["selector"] == selector
        assert service["spec"]["ports"] == [{"name": "http", "port": hop.port, "targetPort": "http"}]


def test_the_stateless_hops_and_only_they_autoscale() -> None:
    manifest = rendered("base")
    hpas = objects(manifest, "HorizontalPodAutoscaler")
    targets = {h["spec"]["scaleTargetRef"]["name"] for h in hpas.values()}
    assert targets == {hop.name for p, hop in HOPS.items() if p not in STATEFUL}
    deployments = objects(manifest, "Deployment")
    for package, hop in HOPS.items():
        spec = deployments[hop.name]["spec"]
        if package in STATEFUL:
            assert spec["replicas"] == 1, hop.name
        else:
            assert "replicas" not in spec, f"{hop.name}: its HPA owns the replica count"
    for hpa in hpas.values():
        assert hpa["spec"]["scaleTargetRef"]["kind"] == "Deployment"
        assert 2 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]


def test_the_embedded_sqlite_stores_get_one_replica_and_a_volume_and_the_database_url_from_a_secret() -> None:
    manifest = rendered("base")
    claims = objects(manifest, "PersistentVolumeClaim")
    for package in STATEFUL - CODE_POOLS:
        deployment = hop_deployment(manifest, HOPS[package])
        assert deployment["spec"]["strategy"] == {"type": "Recreate"}  # two pods never open one SQLite file
        volumes = {v["name"]: v for v in pod_spec(deployment)["volumes"]}
        assert volumes["data"]["persistentVolumeClaim"]["claimName"] in claims
        (container,) = pod_spec(deployment)["containers"]
        url = env_of(container)["FLLM_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
        assert url == {"name": "fllm-database", "key": "url", "optional": True}


def test_every_container_has_requests_and_limits_and_runs_unprivileged() -> None:
    for deployment in objects(rendered("overlays/local-observability"), "Deployment").values():
        assert pod_spec(deployment)["securityContext"]["runAsNonRoot"] is True
        for container in containers(deployment):
            resources = container["resources"]
            for part in ("requests", "limits"):
                assert {"cpu", "memory"} <= resources[part].keys(), (deployment["metadata"]["name"], part)
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}


def _compose_env() -> dict[str, str]:
    anchor = load_yaml(COMPOSE)["x-fllm-env"]
    return {k: str(v) for k, v in anchor.items()}


def test_the_env_is_composes_with_the_keys_in_a_secret() -> None:
    manifest = rendered("overlays/local-observability")
    config = generated(manifest, "ConfigMap", "fllm-env")["data"]
    keys = generated(manifest, "Secret", "fllm-keys")
    key_names = set(keys.get("data", {})) | set(keys.get("stringData", {}))
    compose = _compose_env()
    for name, value in compose.items():
        if "${" in value and name in key_names:
            continue  # a key: in the Secret, not the ConfigMap
        assert name in config, name
        if "${" not in value:
            assert config[name] == value, name
    assert not key_names & set(config), "a key in the ConfigMap"
    assert {hop.api_key_env for hop in HOPS.values() if hop.api_key_env} <= key_names
    assert {"FLLM_DYNAMIC_SESSIONS_TOKEN", "FLLM_TELEMETRY_HASH_KEY"} <= key_names
    example = {line.split("=", 1)[0] for line in (KUBERNETES / "keys.env.example").read_text().splitlines()
               if line and not line.startswith("#")}
    assert example == key_names
    for package, hop in HOPS.items():
        assert config[hop.url_env] == f"http://{hop.name}:{hop.port}", package
    for deployment in objects(manifest, "Deployment").values():
        if deployment["metadata"]["labels"].get("app.kubernetes.io/component") == "hop":
            (container,) = pod_spec(deployment)["containers"]
            sources = {next(iter(s.values()))["name"] for s in container["envFrom"]}
            assert sources == {config_name(manifest, "ConfigMap", "fllm-env"), keys["metadata"]["name"]}


def _settings_classes() -> list[type[FllmSettings]]:
    found, todo = [], list(FllmSettings.__subclasses__())
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


def _hop_env(manifest: Manifest, container: dict[str, Any]) -> tuple[dict[str, str], set[str]]:
    """The values a hop's container gets (ConfigMap, generated Secret, literal env), and the names it gets."""
    values: dict[str, str] = {}
    for source in container["envFrom"]:
        kind = "ConfigMap" if "configMapRef" in source else "Secret"
        obj = objects(manifest, kind)[(source.get("configMapRef") or source["secretRef"])["name"]]
        data = obj.get("data", {})
        if kind == "Secret":
            data = {k: base64.b64decode(v).decode() for k, v in data.items()}
        values |= data
    env = env_of(container)
    values |= {name: e["value"] for name, e in env.items() if "value" in e}
    return values, set(values) | set(env)


def test_every_variable_set_is_a_setting_and_every_hop_reads_its_env_without_error() -> None:
    manifest = rendered("overlays/local-observability")
    classes = _settings_classes()
    known = {cls.variable(field) for cls in classes for field in cls.model_fields}
    known |= {hop.url_env for hop in HOPS.values()} | {hop.api_key_env for hop in HOPS.values() if hop.api_key_env}
    for hop in HOPS.values():
        (container,) = pod_spec(hop_deployment(manifest, hop))["containers"]
        values, names = _hop_env(manifest, container)
        ours = {n for n in names if n.startswith(("FLLM_", "CONTEXTAPI_"))}
        assert ours <= known, f"{hop.name}: {sorted(ours - known)} are read by no settings class"
        for cls in classes:
            if cls is not AzureOpenAISettings:  # only with FLLM_MODEL=azure-openai, which needs an endpoint
                cls.from_mapping(values)  # a SettingsError names the variable


def config_name(manifest: Manifest, kind: str, name: str) -> str:
    return generated(manifest, kind, name)["metadata"]["name"]


def test_the_context_api_points_at_the_code_pools_by_service_name() -> None:
    manifest = rendered("base")
    (container,) = pod_spec(hop_deployment(manifest, HOPS["context_api"]))["containers"]
    env = env_of(container)
    compose = load_yaml(COMPOSE)["services"]["context-api"]["environment"]
    for name in ("FLLM_CODE_INTERPRETER_ENDPOINTS", "CONTEXTAPI_CODEEXECUTION_CUSTOMCONTAINER"):
        assert env[name]["value"] == compose[name]


def test_the_collector_is_every_hops_otlp_endpoint_and_runs_the_repositorys_config() -> None:
    manifest = rendered("overlays/local-observability")
    config = generated(manifest, "ConfigMap", "fllm-env")["data"]
    services = objects(manifest, "Service")
    endpoint = config["OTEL_EXPORTER_OTLP_ENDPOINT"]
    assert endpoint == "http://otel-collector:4318"
    assert {"name": "otlp-http", "port": 4318, "targetPort": "otlp-http"} in services["otel-collector"]["spec"]["ports"]
    collector_files = generated(manifest, "ConfigMap", "otel-collector-config")["data"]
    assert collector_files["config.yaml"] == COLLECTOR.read_text()
    assert collector_files["azure-monitor.yaml"] == COLLECTOR_AZURE.read_text()
    # The collector's exporters find Jaeger by its Service name and port.
    jaeger = load_yaml(COLLECTOR)["exporters"]["otlp_grpc/jaeger"]["endpoint"]
    host, port = jaeger.split(":")
    assert int(port) in {p["port"] for p in services[host]["spec"]["ports"]}
    dashboards = generated(manifest, "ConfigMap", "grafana-dashboards")["data"]
    assert set(dashboards) == {p.name for p in GRAFANA.glob("*.json")}


def test_the_azure_monitor_overlay_layers_the_exporter_as_compose_does() -> None:
    manifest = rendered("overlays/azure-monitor")
    (collector,) = pod_spec(objects(manifest, "Deployment")["otel-collector"])["containers"]
    compose = load_yaml(ROOT / "deploy" / "docker-compose.azure-monitor.yml")["services"]["otel-collector"]
    assert [a.rsplit("/", 1)[1] for a in collector["args"]] == [a.rsplit("/", 1)[1] for a in compose["command"]]
    env = env_of(collector)
    assert env["APPLICATIONINSIGHTS_CONNECTION_STRING"]["valueFrom"]["secretKeyRef"] == {
        "name": "fllm-azure-monitor", "key": "connection-string"}
    assert "FLLM_TRACE_SAMPLING_PERCENTAGE" in env  # the patch merged, not replaced, the env
    assert not [o for o in manifest if o["kind"] == "Secret"], "no key may come from the repository"


def _references(deployment: dict[str, Any]) -> Iterator[tuple[str, str, bool]]:
    spec = pod_spec(deployment)
    for volume in spec.get("volumes", []):
        if "configMap" in volume:
            yield "ConfigMap", volume["configMap"]["name"], volume["configMap"].get("optional", False)
        if "secret" in volume:
            yield "Secret", volume["secret"]["secretName"], volume["secret"].get("optional", False)
    for container in containers(deployment):
        for source in container.get("envFrom", []):
            for kind, key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
                if key in source:
                    yield kind, source[key]["name"], source[key].get("optional", False)
        for entry in container.get("env", []):
            for kind, key in (("ConfigMap", "configMapKeyRef"), ("Secret", "secretKeyRef")):
                if ref := entry.get("valueFrom", {}).get(key):
                    yield kind, ref["name"], ref.get("optional", False)


@pytest.mark.parametrize(("kustomization", "missing"), [
    ("overlays/local-observability", set()),
    ("overlays/azure-monitor", OPERATOR_SECRETS),
])
def test_every_reference_resolves_but_the_secrets_the_operator_creates(kustomization: str,
                                                                        missing: set[str]) -> None:
    manifest = rendered(kustomization)
    present = {(o["kind"], o["metadata"]["name"]) for o in manifest}
    unresolved = {name for d in objects(manifest, "Deployment").values()
                  for kind, name, optional in _references(d) if not optional and (kind, name) not in present}
    assert unresolved == missing
    claims = {v["persistentVolumeClaim"]["claimName"] for d in objects(manifest, "Deployment").values()
              for v in pod_spec(d).get("volumes", []) if "persistentVolumeClaim" in v}
    assert claims <= set(objects(manifest, "PersistentVolumeClaim"))


def test_the_code_pools_get_what_bubblewrap_needs() -> None:
    base = rendered("base")
    for package in CODE_POOLS:
        spec = pod_spec(hop_deployment(base, HOPS[package]))
        assert spec["securityContext"]["seccompProfile"] == {"type": "Unconfined"}
        assert spec["securityContext"]["appArmorProfile"] == {"type": "Unconfined"}
        (container,) = spec["containers"]
        assert env_of(container)["FLLM_CODE_SANDBOX"]["value"] == "auto"
        sandboxed = pod_spec(hop_deployment(with_sandbox(), HOPS[package]))
        assert sandboxed["hostUsers"] is False
        (container,) = sandboxed["containers"]
        assert container["securityContext"]["procMount"] == "Unmasked"
        assert env_of(container)["FLLM_CODE_SANDBOX"]["value"] == "bwrap"
    for package in set(HOPS) - CODE_POOLS:  # nobody else loosens the runtime's profiles
        spec = pod_spec(hop_deployment(with_sandbox(), HOPS[package]))
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert "hostUsers" not in spec


def test_only_the_portal_is_open_beyond_the_namespace() -> None:
    manifest = rendered("overlays/azure-monitor")
    (policy,) = objects(manifest, "NetworkPolicy").values()
    assert policy["spec"]["ingress"] == [{"from": [{"podSelector": {}}]}]
    expressions = {e["key"]: e for e in policy["spec"]["podSelector"]["matchExpressions"]}

    def selected(labels: dict[str, str]) -> bool:
        return all((labels.get(key) in e["values"]) == (e["operator"] == "In") for key, e in expressions.items())

    open_pods = {name for name, d in objects(manifest, "Deployment").items()
                 if not selected(d["spec"]["template"]["metadata"]["labels"])}
    assert open_pods == {"portal"}


def test_the_images_match_compose() -> None:
    compose = load_yaml(COMPOSE)["services"]
    images = {c["name"]: c["image"] for d in objects(rendered("overlays/local-observability"), "Deployment").values()
              for c in containers(d)}
    for name, service in compose.items():
        if name in images:
            assert images[name] == service["image"], name
    assert set(compose) <= set(images)
