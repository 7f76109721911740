"""Pictures and files of an answer reach the person, through the real chain, in headless Chromium.

The prompt's code draws a matplotlib figure (``plt.show()``: the data plane's image result) and saves a PNG
and a CSV under /mnt/data (generated files: Context API file records, Core's files route). The page shows
both pictures decoded and the CSV as a link whose bytes come back through the portal. The full-page
screenshot is kept: in the test's tmp dir and at ``test-artifacts/portal-pictures.png`` (git-ignored), and
in ``$FLLM_SCREENSHOT_DIR`` when set.
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
import shutil
import struct
from pathlib import Path

import httpx
import pytest

from services.auth.client_tokens import bearer_source
from services.common.settings import DEFAULT_INSTANCE_ID
from services.launcher import REPO
from tests.chain.conftest import LiveChain
from tests.portal.browser import CHROMIUM, Browser

ARTIFACTS = REPO / "test-artifacts"
ROWS = [["month", "sales"], ["jan", "3"], ["feb", "1"], ["mar", "4"]]
CODE = f"""import csv
import matplotlib.pyplot as plt
rows = {ROWS!r}
plt.figure(figsize=(4, 3), dpi=100)
plt.bar([r[0] for r in rows[1:]], [int(r[1]) for r in rows[1:]], color='#1f6feb')
plt.title('sales by month')
plt.savefig('/mnt/data/sales.png')
plt.show()
with open('/mnt/data/sales.csv', 'w', newline='') as handle:
    csv.writer(handle).writerows(rows)
print('drew the chart and saved sales.png and sales.csv')
"""
PROMPT = f"Chart the sales, save the chart and the table:\n```python\n{CODE}```"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.chain,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is not installed (apt-get install chromium)"),
]


def png_size(data: bytes) -> tuple[int, int]:
    assert data.startswith(b"\x89PNG\r\n\x1a\n"), data[:16]
    return struct.unpack(">II", data[16:24])


def core_message(live: LiveChain, operation_id: str) -> dict:
    """The agent Message as Core's status route answers it, with a token as the portal's."""
    source = bearer_source(live.chain.data_dir, live.chain.service_env())
    assert source is not None
    url = f"{live.chain.url('core_api')}/instances/{DEFAULT_INSTANCE_ID}/async-completions/{operation_id}/status"
    answer = httpx.get(url, headers={"Authorization": f"Bearer {asyncio.run(source.token())}"}, timeout=30,
                       trust_env=False)
    assert answer.status_code == 200, answer.text[:500]
    return answer.json()["result"]


def keep(shot: Path) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    kept = ARTIFACTS / shot.name
    shutil.copyfile(shot, kept)
    if target := os.environ.get("FLLM_SCREENSHOT_DIR"):
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, Path(target) / shot.name)
    return kept


def test_a_chart_and_a_table_made_by_code_reach_the_person(live: LiveChain, tmp_path: Path) -> None:
    portal = live.chain.url("portal")
    profile = tmp_path / "profile"
    profile.mkdir()
    browser = Browser(profile)
    try:
        browser.open(portal + "/")
        browser.type_into("prompt", PROMPT)
        browser.click("send")
        browser.wait_for("['done', 'error'].includes(document.body.dataset.state)", timeout_s=120)
        assert browser.text_of("status") == "Completed", (browser.text_of("status-message"), browser.text_of("error"))
        assert "saved sales.png and sales.csv" in browser.text_of("answer")
        # Every picture fetched (through the portal, or inline) and decoded by the browser; no failed one.
        browser.wait_for("document.querySelectorAll('#files img').length >= 2 && [...document.querySelectorAll("
                         "'#files img')].every(i => i.complete && i.naturalWidth > 0)"
                         " || document.querySelector('#files .err') !== null", timeout_s=30)
        failed = browser.evaluate("[...document.querySelectorAll('#files .err')].map(e => e.textContent)")
        images = browser.evaluate("[...document.querySelectorAll('#files img')].map(i => ({alt: i.alt, "
                                  "src: i.getAttribute('src'), width: i.naturalWidth, height: i.naturalHeight}))")
        links = browser.evaluate("[...document.querySelectorAll('#files a')].map(a => ({text: a.textContent, "
                                 "href: a.href, download: a.getAttribute('download')}))")
        operation_id = browser.text_of("operation-id").strip()
        browser.wait_for("document.body.dataset.trace !== undefined", timeout_s=30)  # the page has settled
        shot = tmp_path / "portal-pictures.png"
        screenshot = browser.screenshot(shot, full_page=True)
    finally:
        browser.close()
    kept = keep(shot)
    print(f"screenshot kept at {kept}")
    assert not failed, failed

    # The figure shown by plt.show(): the data plane's image result, inline; the saved PNG: a generated file.
    inline = [image for image in images if image["src"].startswith("data:image/png;base64,")]
    served = [image for image in images if image["src"].startswith("api/files/")]
    assert len(inline) == 1 and inline[0]["width"] > 0 and inline[0]["height"] > 0, images
    assert [(image["alt"], image["width"], image["height"]) for image in served] == [("sales.png", 400, 300)], images
    chart = httpx.get(f"{portal}/{served[0]['src']}", timeout=30, trust_env=False)
    assert chart.status_code == 200 and chart.headers["content-type"] == "image/png", chart.text[:300]
    assert png_size(chart.content) == (400, 300)

    # The CSV: a download link, its bytes exactly what the code wrote, through the portal's own route.
    assert [(link["text"], link["download"]) for link in links] == [("⬇ sales.csv", "sales.csv")], links
    assert links[0]["href"].startswith(f"{portal}/api/files/file-"), links
    table = httpx.get(links[0]["href"], timeout=30, trust_env=False)
    assert table.status_code == 200, table.text[:300]
    expected = io.StringIO(newline="")
    csv.writer(expected).writerows(ROWS)
    assert table.content == expected.getvalue().encode()
    assert table.headers["content-type"] == "application/octet-stream"
    assert table.headers["content-disposition"].startswith("attachment;")

    assert png_size(screenshot)[1] > 900  # the whole page, below the fold too

    # What the page read: Core's Message as the original builds it (image_file item, file_path item).
    message = core_message(live, operation_id)
    chart_id = served[0]["src"].split("?")[0].rsplit("/", 1)[-1]
    table_id = links[0]["href"].split("?")[0].rsplit("/", 1)[-1]
    items = [(item.get("type"), item.get("fileName"), str(item.get("value")).rsplit("/", 1)[-1])
             for item in message["content"] if item.get("type") in ("image_file", "file_path")]
    assert sorted(items, key=str) == sorted([("image_file", None, chart_id), ("file_path", "sales.csv", table_id)],
                                            key=str), message["content"]
