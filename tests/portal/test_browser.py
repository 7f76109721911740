"""The portal as a real process, used through its page in headless Chromium, against the fake Core."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from telemetry import conventions as c
from tests.portal.browser import CHROMIUM, Browser
from tests.portal.conftest import PROGRESS, FakeCore, answer_to, png, traceparent_trace_id

REPO = Path(__file__).resolve().parents[2]
JAEGER = "http://127.0.0.1:16686"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.chain,  # the portal runs as its own process
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is not installed (apt-get install chromium)"),
]


@dataclass
class Portal:
    url: str
    data_dir: Path
    process: subprocess.Popen[bytes]


@pytest.fixture()
def portal(fake_core: FakeCore, tmp_path: Path) -> Iterator[Portal]:
    data_dir = tmp_path / "portal-data"
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("FLLM_", "OTEL_"))},
        "FLLM_FD": str(sock.fileno()),
        "FLLM_CORE_API_URL": fake_core.url,
        "FLLM_JAEGER_URL": JAEGER,
        "FLLM_DATA_DIR": str(data_dir),
        "FLLM_TELEMETRY_FILE": "on",
        "OTEL_BSP_SCHEDULE_DELAY": "50",
    }
    log_path = tmp_path / "portal.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "services.portal"], cwd=REPO, env=env,
                                   pass_fds=[sock.fileno()], stdout=log, stderr=log)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    sock.close()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"{url}/status", timeout=1, trust_env=False).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.05)
    else:
        process.kill()
        pytest.fail(f"the portal did not start: {log_path.read_text()[-2000:]}")
    yield Portal(url, data_dir, process)
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture()
def browser(tmp_path: Path) -> Iterator[Browser]:
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    chromium = Browser(profile)
    yield chromium
    chromium.close()


def exported_spans(data_dir: Path) -> list[dict[str, object]]:
    path = data_dir / "traces.jsonl"
    if not path.exists():
        return []
    spans = []
    for line in path.read_text().splitlines():
        for resource in json.loads(line)["resourceSpans"]:
            for scope in resource["scopeSpans"]:
                spans.extend(scope["spans"])
    return spans


def test_a_person_asks_through_the_page(portal: Portal, browser: Browser, fake_core: FakeCore, tmp_path: Path) -> None:
    fake_core.reset(in_progress_polls=None, complete_after_s=1.5)  # InProgress (with progress text) for 1.5 s
    prompt = "import math\nprint(math.factorial(5))"
    browser.open(portal.url + "/")
    browser.evaluate("document.getElementById('agent').value = 'custom-container-coder'")
    browser.type_into("prompt", prompt)
    browser.click("send")

    seen = set()
    deadline = time.monotonic() + 30
    while not browser.text_of("answer") and time.monotonic() < deadline:
        seen.add((browser.text_of("status"), browser.text_of("status-message")))
        time.sleep(0.05)
    assert browser.text_of("answer") == answer_to(prompt), browser.text_of("error")
    assert ("InProgress", PROGRESS) in seen, f"the progress was not shown: {seen}"
    assert browser.text_of("status") == "Completed"
    assert browser.evaluate("document.body.dataset.state") == "done"
    assert browser.evaluate("document.getElementById('send').disabled") is False

    (submission,) = fake_core.submissions
    assert submission["body"]["user_prompt"] == prompt
    assert submission["body"]["agent_name"] == "custom-container-coder"
    trace_id = traceparent_trace_id(submission["traceparent"])
    (operation_id,) = [op.operation_id for op in fake_core.operations.values() if op.trace_id == trace_id]
    assert browser.text_of("trace-id") == trace_id
    assert browser.text_of("operation-id") == operation_id
    assert browser.evaluate("document.getElementById('jaeger-link').hidden") is False
    assert browser.evaluate("document.getElementById('jaeger-link').href") == f"{JAEGER}/trace/{trace_id}"

    png = browser.screenshot(tmp_path / "portal.png")
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 1000
    assert (tmp_path / "portal.png").stat().st_size == len(png)

    # The portal service itself exported the operation's root and its wait, in the trace Core joined.
    names: set[str] = set()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        names = {s["name"] for s in exported_spans(portal.data_dir) if s["traceId"] == trace_id}
        if {c.SPAN_PORTAL_SUBMIT, c.SPAN_PORTAL_WAIT} <= names:
            break
        time.sleep(0.1)
    assert {c.SPAN_PORTAL_SUBMIT, c.SPAN_PORTAL_WAIT} <= names
    polls = [s for s in exported_spans(portal.data_dir) if s["name"] == c.SPAN_PORTAL_POLL]
    assert polls and all(p["traceId"] != trace_id and p["links"][0]["traceId"] == trace_id for p in polls)


def test_the_page_shows_what_went_wrong(portal: Portal, browser: Browser, fake_core: FakeCore) -> None:
    fake_core.reset(in_progress_polls=0, fail=True)
    browser.open(portal.url + "/")
    browser.type_into("prompt", "1/0")
    browser.click("send")
    browser.wait_for("document.body.dataset.state === 'done'")
    assert browser.text_of("status") == "Failed"
    assert browser.text_of("answer") == "The code raised ZeroDivisionError"


def test_pictures_and_files_of_the_answer_reach_the_person(portal: Portal, browser: Browser, fake_core: FakeCore,
                                                           tmp_path: Path) -> None:
    image, table = png(), b"a,b\n1,2\n"
    file_url = f"{{{{fllm_base_url}}}}/instances/{fake_core.instance_id}/files/FoundationaLLM.Context/file-chart"
    fake_core.reset(
        in_progress_polls=0,
        content=[{"type": "image_file", "fileName": "chart.png", "value": file_url},
                 {"type": "image", "format": "png", "base64_data": base64.b64encode(image).decode()},
                 {"type": "image_file", "fileName": "gone.png", "value": file_url.replace("file-chart", "file-gone")}],
        artifacts=[{"id": "code_interpreter", "type": "File", "filepath": "file-data",
                    "metadata": {"original_file_name": "data.csv", "content_type": "text/csv"}}],
        files={"file-chart": (image, "image/png"), "file-data": (table, "text/csv")},
    )
    browser.open(portal.url + "/")
    browser.type_into("prompt", "plot it")
    browser.click("send")
    browser.wait_for("document.body.dataset.state === 'done'")
    browser.wait_for("[...document.querySelectorAll('#files img')].every(i => i.complete && i.naturalWidth)"
                     " && document.querySelectorAll('#files img').length === 2"
                     " && document.querySelector('#files .err') !== null")
    assert "gone.png could not be fetched" in browser.evaluate("document.querySelector('#files .err').textContent")
    loaded = browser.evaluate("[...document.querySelectorAll('#files img')].map(i => [i.naturalWidth, i.alt])")
    assert loaded == [[48, "chart.png"], [48, "image result"]]  # fetched through the portal and decoded
    links = browser.evaluate("[...document.querySelectorAll('#files a')].map(a => [a.textContent, a.href])")
    assert links == [["⬇ data.csv", f"{portal.url}/api/files/file-data?name=data.csv"]]
    assert sorted(r["file_id"] for r in fake_core.file_requests) == ["file-chart", "file-gone"]
    # with the portal's own credentials, as its submissions
    assert fake_core.file_requests[0]["authorization"] == fake_core.submissions[0]["authorization"]
    png_shot = browser.screenshot(tmp_path / "portal-image.png")
    assert png_shot.startswith(b"\x89PNG")
    if target := os.environ.get("FLLM_SCREENSHOT_DIR"):
        Path(target).mkdir(parents=True, exist_ok=True)
        (Path(target) / "portal-image-result.png").write_bytes(png_shot)

    download = httpx.get(links[0][1], timeout=10, trust_env=False)
    assert download.status_code == 200 and download.content == table
    assert download.headers["content-type"] == "application/octet-stream"  # never rendered by the browser
    assert download.headers["content-disposition"].startswith("attachment;")
    missing = httpx.get(f"{portal.url}/api/files/file-gone", timeout=10, trust_env=False)
    assert missing.status_code == 404 and "file-gone" in missing.json()["detail"]
    bad = httpx.get(f"{portal.url}/api/files/..%2Fetc", timeout=10, trust_env=False)
    assert 400 <= bad.status_code < 500
