"""The portal's trace views in headless Chromium against the real chain: ask a code prompt, see its waterfall
(every hop and the code execution), open the traces page and the latency report. Screenshots are kept in
a folder the test prints (and copied to $FLLM_SCREENSHOT_DIR when set)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from telemetry import conventions as c
from tests.chain.conftest import LiveChain
from tests.portal.browser import CHROMIUM, Browser

pytestmark = [
    pytest.mark.browser,
    pytest.mark.chain,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is not installed (apt-get install chromium)"),
]

CHAIN_SERVICES = {c.PORTAL, c.CORE_API, c.ORCHESTRATION_API, c.LANGCHAIN_API, c.STATE_API, c.CONTEXT_API,
                  c.DYNAMIC_SESSIONS}


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("screenshots")
    print(f"\nscreenshots: {folder}")
    yield folder
    if target := os.environ.get("FLLM_SCREENSHOT_DIR"):
        Path(target).mkdir(parents=True, exist_ok=True)
        for png in folder.glob("*.png"):
            shutil.copy(png, target)


@pytest.fixture()
def browser(tmp_path: Path) -> Iterator[Browser]:
    profile = tmp_path / "profile"
    profile.mkdir()
    chromium = Browser(profile)
    chromium.call("Emulation.setDeviceMetricsOverride", width=1400, height=1300, deviceScaleFactor=1, mobile=False)
    yield chromium
    chromium.close()


def full_page(browser: Browser, path: Path) -> None:
    """A screenshot of the whole page, not just the window."""
    height = browser.evaluate("Math.ceil(document.documentElement.scrollHeight)")
    browser.call("Emulation.setDeviceMetricsOverride", width=1400, height=min(height, 6000), deviceScaleFactor=1,
                 mobile=False)
    png = browser.screenshot(path)
    browser.call("Emulation.setDeviceMetricsOverride", width=1400, height=1300, deviceScaleFactor=1, mobile=False)
    assert png.startswith(b"\x89PNG") and len(png) > 10_000


def _rows(browser: Browser, selector: str) -> list[dict[str, str]]:
    return browser.evaluate(
        f"[...document.querySelectorAll({selector!r})].map(r => ({{service: r.dataset.service, span: r.dataset.span,"
        " cls: r.className}))")


def test_the_answer_shows_its_waterfall_and_the_traces_page_opens_it(live: LiveChain, browser: Browser,
                                                                     shots: Path) -> None:
    portal = live.chain.url("portal")
    browser.open(portal + "/")
    browser.type_into("prompt", "Run it:\n```python\nprint(sum(range(101)))\n```")
    browser.click("send")
    browser.wait_for("document.body.dataset.state === 'done'", 60)
    assert browser.text_of("answer").strip() == "5050", browser.text_of("error")
    trace_id = browser.text_of("trace-id").strip()
    browser.wait_for("document.body.dataset.trace === 'shown'", 30)

    rows = _rows(browser, "#trace table.wf tbody tr")
    assert {r["service"] for r in rows} >= CHAIN_SERVICES, rows
    executions = [r for r in rows if "exec" in r["cls"].split()]
    assert executions and executions[0]["span"] == c.SPAN_CODE_EXECUTE
    critical = [r for r in rows if "crit" in r["cls"].split()]
    assert critical and critical[0]["span"] == c.SPAN_PORTAL_SUBMIT  # the critical path is marked from the root
    assert browser.evaluate("document.querySelectorAll('#trace .phasebar div').length") >= 5
    assert browser.evaluate("document.querySelector('#trace [data-role=linked] a') !== null")  # its status polls
    assert browser.evaluate("document.querySelector('#trace .waterfall').dataset.traceId") == trace_id
    full_page(browser, shots / "portal-answer-waterfall.png")

    # the traces page lists it; opening it shows the same waterfall; the latency report covers it
    browser.open(portal + "/traces")
    browser.wait_for("document.body.dataset.state === 'ready'", 30)
    listed = browser.evaluate("[...document.querySelectorAll('#ops tbody tr')].map(r => r.dataset.traceId)")
    assert trace_id in listed
    browser.evaluate(f"document.querySelector('#ops tr[data-trace-id=\"{trace_id}\"]').click()")
    browser.wait_for(f"document.body.dataset.trace === '{trace_id}'", 15)
    assert {r["service"] for r in _rows(browser, "#trace table.wf tbody tr")} >= CHAIN_SERVICES
    hops = browser.evaluate("[...document.querySelectorAll('#hops tbody tr')].map(r => r.cells[1].textContent)")
    assert c.SPAN_CODE_EXECUTE in hops and c.SPAN_PORTAL_SUBMIT in hops
    assert browser.evaluate("document.querySelectorAll('#histogram .hist div').length") >= 1
    full_page(browser, shots / "traces-page.png")

    # the same figures the CLI computes: one implementation behind both
    report = httpx.get(f"{portal}/api/latency", params={"window": "1h"}, timeout=30, trust_env=False).json()
    assert report["operations"] >= 1 and {h["span"] for h in report["hops"]} >= {c.SPAN_CODE_EXECUTE}


def test_a_failed_hop_is_marked_on_the_waterfall_and_the_list(live: LiveChain, browser: Browser,
                                                               shots: Path) -> None:
    """Runs last in this module: it stops the Context API."""
    live.chain.stop_service("context_api")
    portal = live.chain.url("portal")
    browser.open(portal + "/")
    browser.type_into("prompt", "Run it:\n```python\nprint(6 * 7)\n```")
    browser.click("send")
    browser.wait_for("document.body.dataset.state === 'done'", 60)
    assert browser.text_of("status") == "Failed"
    trace_id = browser.text_of("trace-id").strip()
    browser.wait_for("document.body.dataset.trace === 'shown'", 30)
    failed = browser.evaluate("[...document.querySelectorAll('#trace tr.failed')].map(r => [r.dataset.service,"
                              " r.querySelector('.errmsg').textContent])")
    assert failed and all(message.startswith("✗") for _, message in failed), failed
    head = browser.evaluate("document.querySelector('#trace .wf-head').textContent")
    full_page(browser, shots / "portal-failed-hop-waterfall.png")

    listed = httpx.get(f"{portal}/api/traces", timeout=30, trust_env=False).json()["operations"]
    (row,) = [r for r in listed if r["trace_id"] == trace_id]
    assert row["status"] == "Failed" and row["failed_hop"] == c.CONTEXT_API  # the hop that could not be reached
    assert f"failed hop: {c.CONTEXT_API}" in head
    browser.open(portal + "/traces")
    browser.wait_for("document.body.dataset.state === 'ready'", 30)
    assert browser.evaluate(f"document.querySelector('#ops tr[data-trace-id=\"{trace_id}\"] td.Failed') !== null")
    full_page(browser, shots / "traces-page-with-failure.png")
