"""The registry of hops (services/registry.py) against everything that lists hops: settings, launcher,
conventions, compose, alert rules and KQL; and the timeout ladder's rule."""

from __future__ import annotations

import importlib.util
import re

import pytest

from services import launcher
from services.common.settings import API_KEY_ENV, SERVICE_PORTS, Settings, deployed_name, service_name, url_env
from services.registry import HOPS, START_ORDER, Hop, called, default_path, start_order
from telemetry import conventions as c
from tests.stack.stack_files import AZURE, COMPOSE, alert_rules, load_yaml


def test_every_hop_is_a_package_that_runs() -> None:
    for package, hop in HOPS.items():
        assert hop.package == package
        assert importlib.util.find_spec(f"services.{package}.__main__") is not None, package
        assert set(hop.next_hops) <= set(HOPS), f"{package} calls an unknown hop"
        assert hop.alternative_to in (None, *HOPS)
    assert len({hop.port for hop in HOPS.values()}) == len(HOPS), "two hops on one port"
    assert len({hop.service_name for hop in HOPS.values()}) == len({hop.name for hop in HOPS.values()}) == len(HOPS)


def test_telemetry_names_are_foundationallms() -> None:
    original = {"core_api": "CoreAPI", "gatekeeper_api": "GatekeeperAPI", "orchestration_api": "OrchestrationAPI",
                "langchain_api": "LangChainAPI", "state_api": "StateAPI", "context_api": "ContextAPI"}
    assert {p: HOPS[p].service_name for p in original} == original and c.SERVICE_NAMESPACE == "FoundationaLLM"
    for hop in HOPS.values():  # the others in the same style; deployment names stay DNS labels
        assert re.fullmatch(r"[A-Z][A-Za-z]+", hop.service_name), hop.service_name
        assert re.fullmatch(r"[a-z][a-z-]*", hop.name), hop.name
        assert c.service_name_now(hop.name) == hop.service_name == c.service_name_now(hop.service_name)


def test_settings_launcher_and_conventions_derive_from_it() -> None:
    assert {p: hop.port for p, hop in HOPS.items()} == SERVICE_PORTS
    assert {p: hop.api_key_env for p, hop in HOPS.items() if hop.api_key_env} == API_KEY_ENV
    assert all(service_name(p) == hop.service_name and deployed_name(p) == hop.name and url_env(p) == hop.url_env
               for p, hop in HOPS.items())
    assert launcher.START_ORDER == START_ORDER
    assert tuple(hop.service_name for hop in HOPS.values()) == c.CHAIN_SERVICES
    settings = Settings()
    assert set(settings.urls) == set(HOPS) and set(settings.api_keys) == set(API_KEY_ENV)


def test_start_order_puts_callees_first() -> None:
    assert sorted(START_ORDER) == sorted(HOPS)
    for package, hop in HOPS.items():
        assert all(START_ORDER.index(callee) < START_ORDER.index(package) for callee in hop.next_hops)
    assert START_ORDER[-1] == "portal"


def test_a_cycle_has_no_start_order() -> None:
    hops = {"a": Hop(package="a", name="a", service_name="A", port=1, next_hops=("b",)),
            "b": Hop(package="b", name="b", service_name="B", port=2, next_hops=("a",))}
    with pytest.raises(ValueError, match="cycle"):
        start_order(hops)


def test_each_caller_waits_longer_than_its_callees() -> None:
    for package, hop in HOPS.items():
        if hop.timeout_share is None:
            continue
        for callee in hop.next_hops:
            share = HOPS[callee].timeout_share
            assert share is None or share < hop.timeout_share, f"{package} waits no longer than {callee}"
    settings = Settings(hop_timeout_s=2)
    assert settings.timeout_of("gatekeeper_api") > settings.timeout_of("orchestration_api") > (
        settings.timeout_of("langchain_api")) > settings.timeout_of("state_api") == 2
    with pytest.raises(ValueError, match="portal"):
        settings.timeout_of("portal")


def test_the_default_path_skips_the_bypassed_gatekeeper_and_the_other_provider() -> None:
    assert default_path() == ("portal", "core_api", "orchestration_api", "langchain_api", "state_api",
                              "context_api", "dynamic_sessions")
    assert called() == tuple(p for p in HOPS if p != "portal")


def test_compose_runs_every_hop_and_waits_for_its_next_hops() -> None:
    services = load_yaml(COMPOSE)["services"]
    ours = {name for name, service in services.items() if "services." in " ".join(service.get("command", []))}
    assert ours == {hop.name for hop in HOPS.values()}
    for hop in HOPS.values():
        depends = set(services[hop.name].get("depends_on") or {}) & ours
        assert depends == {HOPS[p].name for p in hop.next_hops}, hop.name
        env = services[hop.name]["environment"]
        assert all(HOPS[p].url_env in env for p in hop.next_hops), hop.name


def test_every_called_hop_has_a_stopped_reporting_rule_and_kql_entry() -> None:
    names = {HOPS[p].service_name for p in called()}
    assert {r["labels"]["hop"] for r in alert_rules() if r["alert"] == "HopStoppedReporting"} == names
    kql = (AZURE / "alerts" / "HopStoppedReporting.kql").read_text()
    (listed,) = re.findall(r"let Hops = datatable\(Host: string, Hop: string\) \[(.*?)\];", kql, re.S)
    assert set(re.findall(r'"([^"]+)", "([^"]+)"', listed)) == {(HOPS[p].name, HOPS[p].service_name) for p in called()}


def test_the_readme_table_lists_every_hop_with_its_package_and_port() -> None:
    readme = (COMPOSE.parent / "README.md").read_text()
    rows = re.findall(r"^\| ([a-z-]+) \| `(\w+)` \| `services/(\w+)` \| (\d+) \|", readme, re.M)
    assert {(name, service, package, int(port)) for name, service, package, port in rows} == {
        (hop.name, hop.service_name, package, hop.port) for package, hop in HOPS.items()}
