"""The Prometheus alert rules, checked and unit-tested by promtool; and proof that those unit tests bite."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from services.registry import HOPS, called
from tests.stack.stack_files import RULE_TESTS, RULES, alert_rules, load_yaml

PROMTOOL = shutil.which("promtool")


def promtool(*args: str, cwd: Path = RULES.parent) -> subprocess.CompletedProcess[str]:
    if PROMTOOL is None:
        pytest.fail("promtool is missing: apt-get install prometheus (.ci/run does)")
    return subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.mark.promtool
def test_promtool_check_rules() -> None:
    result = promtool("check", "rules", RULES.name)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.promtool
def test_promtool_test_rules() -> None:
    result = promtool("test", "rules", RULE_TESTS.name)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_summary_description_runbook_and_severity() -> None:
    for rule in alert_rules():
        assert {"summary", "description", "runbook"} <= set(rule["annotations"]), rule["alert"]
        assert rule["labels"]["severity"] in {"page", "warning"}, rule["alert"]
        assert rule.get("for"), f"{rule['alert']} fires on a single evaluation"


def test_every_hop_has_a_stopped_reporting_rule() -> None:
    hops = {r["labels"]["hop"] for r in alert_rules() if r["alert"] == "HopStoppedReporting"}
    assert hops == {HOPS[package].service_name for package in called()}  # the portal is the user's side
    host = {hop.service_name: hop.name for hop in HOPS.values()}
    for rule in alert_rules():
        if rule["alert"] == "HopStoppedReporting":  # silent under its service.name, called at its host
            hop = rule["labels"]["hop"]
            assert f'absent_over_time(traces_span_metrics_calls_total{{service_name="{hop}"}}' in rule["expr"]
            assert f'server_address="{host[hop]}"' in rule["expr"]


def test_every_alert_is_unit_tested_firing_and_silent() -> None:
    cases: dict[str, dict[str, int]] = {}
    for test in load_yaml(RULE_TESTS)["tests"]:
        for case in test.get("alert_rule_test", []):
            counts = cases.setdefault(case["alertname"], {"firing": 0, "silent": 0})
            counts["firing" if case.get("exp_alerts") else "silent"] += 1
    for name in {r["alert"] for r in alert_rules()}:
        assert cases.get(name, {}).get("firing"), f"no test where {name} fires"
        assert cases[name]["silent"] >= 1, f"no test where {name} stays silent"


def _mutated_run(tmp_path: Path, rules: str | None = None, tests: str | None = None) -> subprocess.CompletedProcess:
    (tmp_path / RULES.name).write_text(rules if rules is not None else RULES.read_text())
    (tmp_path / RULE_TESTS.name).write_text(tests if tests is not None else RULE_TESTS.read_text())
    return promtool("test", "rules", RULE_TESTS.name, cwd=tmp_path)


@pytest.mark.promtool
def test_a_wrong_expectation_fails(tmp_path: Path) -> None:
    wrong = RULE_TESTS.read_text().replace("service_name: OrchestrationAPI", "service_name: CoreAPI", 1)
    result = _mutated_run(tmp_path, tests=wrong)
    assert result.returncode == 1, result.stdout


@pytest.mark.promtool
def test_the_low_traffic_and_idle_cases_need_the_guards(tmp_path: Path) -> None:
    # Without each rule's `and ...` clause (minimum rate, or "still being called"), the blips page.
    unguarded = re.sub(r"\n\s+and( on \(\))?\n\s+[^\n]+", "", RULES.read_text())
    assert not re.search(r"^\s+and\b", unguarded, re.M)
    result = _mutated_run(tmp_path, rules=unguarded)
    assert result.returncode == 1
    for alert in {r["alert"] for r in alert_rules()}:
        assert f"alertname: {alert}" in result.stdout + result.stderr, f"no blip test of {alert} notices"


@pytest.mark.promtool
def test_the_pending_cases_need_the_for(tmp_path: Path) -> None:
    impatient = re.sub(r"\bfor: \d+m", "for: 0m", RULES.read_text())
    result = _mutated_run(tmp_path, rules=impatient)
    assert result.returncode == 1
    assert "time: 5m" in result.stdout + result.stderr  # the "still pending" expectation broke
