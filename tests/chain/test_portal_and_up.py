"""The portal page against the real chain in headless Chromium; `callstack up` and its clean stop."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from services.common.settings import SERVICE_PORTS
from services.launcher import REPO
from telemetry import conventions as c
from tests.chain.conftest import LiveChain
from tests.chain.spans import assert_one_connected_tree, one
from tests.portal.browser import CHROMIUM, Browser


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is not installed (apt-get install chromium)")
def test_a_person_runs_code_from_the_portal_page_through_the_whole_chain(live: LiveChain, tmp_path: Path) -> None:
    profile = tmp_path / "profile"
    profile.mkdir()
    browser = Browser(profile)
    try:
        browser.open(live.chain.url("portal") + "/")
        browser.type_into("prompt", "Run it:\n```python\nprint(sum(range(101)))\n```")
        browser.click("send")
        deadline = time.monotonic() + 60
        while not browser.text_of("answer") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert browser.text_of("answer").strip() == "5050", browser.text_of("error")
        assert browser.text_of("status") == "Completed"
        trace_id = browser.evaluate("document.getElementById('trace-id').textContent").strip()
        png = browser.screenshot(tmp_path / "portal.png")
    finally:
        browser.close()
    assert png.startswith(b"\x89PNG") and len(png) > 1000
    spans = live.spans(trace_id, {c.PORTAL, c.CORE_API, c.DYNAMIC_SESSIONS})
    assert_one_connected_tree(spans)
    assert one(spans, c.SPAN_PORTAL_SUBMIT).service == c.PORTAL  # the portal service made the root


def _ports_free() -> bool:
    return not any(conn.laddr.port in SERVICE_PORTS.values() for conn in psutil.net_connections("tcp")
                   if conn.status == psutil.CONN_LISTEN)


@pytest.mark.skipif(not _ports_free(), reason="a default port of the chain is in use on this machine")
def test_callstack_up_serves_every_hop_on_its_default_port_and_stops_clean(tmp_path: Path) -> None:
    up = subprocess.Popen([sys.executable, "-m", "services.cli", "up", "--data-dir", str(tmp_path)], cwd=REPO,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    try:
        assert up.stdout is not None
        for line in up.stdout:
            lines.append(line)
            if "Ctrl-C stops every service" in line:
                break
        assert any("core-api" in line and ":63280" in line for line in lines), lines
        for package, port in SERVICE_PORTS.items():
            assert httpx.get(f"http://127.0.0.1:{port}/status", timeout=5).status_code == 200, package
        children = psutil.Process(up.pid).children(recursive=True)
        assert len(children) >= len(SERVICE_PORTS)
        asked = subprocess.run([sys.executable, "-m", "services.cli", "ask", "```python\nprint(7 * 6)\n```",
                                "--data-dir", str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=60)
        assert asked.returncode == 0 and asked.stdout.startswith("42"), asked.stdout + asked.stderr
    finally:
        up.send_signal(signal.SIGTERM)
        assert up.wait(30) == 0
    gone, alive = psutil.wait_procs(children, timeout=5)
    assert not alive, f"orphans left behind: {[p.pid for p in alive]}"
