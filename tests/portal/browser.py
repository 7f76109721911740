"""Headless Chromium driven over the Chrome DevTools Protocol (websocket-client), for the page tests.

Chromium is kept on loopback: every non-loopback request goes to a dead proxy, and its background
services (updates, sync, QUIC, metrics) are off.
"""

from __future__ import annotations

import base64
import itertools
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import websocket

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--proxy-server=http://127.0.0.1:9",  # loopback bypasses it; everything else goes nowhere
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
    "--window-size=1100,900",
)


class CdpError(RuntimeError):
    pass


class Browser:
    def __init__(self, profile_dir: Path) -> None:
        self.profile_dir = profile_dir
        self.log_path = profile_dir.parent / f"{profile_dir.name}.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [str(CHROMIUM), *FLAGS, f"--user-data-dir={profile_dir}", "about:blank"],
            stdout=self._log, stderr=self._log, stdin=subprocess.DEVNULL,
        )
        self._ids = itertools.count(1)
        self.ws = websocket.create_connection(self._page_websocket(), timeout=60, suppress_origin=True)

    def _page_websocket(self, timeout_s: float = 30.0) -> str:
        port_file = self.profile_dir / "DevToolsActivePort"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            if port_file.exists() and (lines := port_file.read_text().splitlines()):
                with httpx.Client(trust_env=False, timeout=5) as http:
                    targets = http.get(f"http://127.0.0.1:{lines[0]}/json/list").json()
                pages = [t for t in targets if t.get("type") == "page"]
                if pages:
                    return pages[0]["webSocketDebuggerUrl"]
            time.sleep(0.1)
        self.close()
        raise RuntimeError(f"chromium did not open its DevTools port: {self.log_path.read_text()[-2000:]}")

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        call_id = next(self._ids)
        self.ws.send(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == call_id:  # anything else is an event
                if "error" in message:
                    raise CdpError(f"{method}: {message['error']}")
                return message.get("result", {})

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise CdpError(f"{expression!r} raised: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout_s: float = 30.0, every_s: float = 0.05) -> Any:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if value := self.evaluate(expression):
                return value
            time.sleep(every_s)
        raise TimeoutError(f"{expression!r} did not become true within {timeout_s} s")

    def open(self, url: str) -> None:
        self.call("Page.enable")
        self.call("Page.navigate", url=url)
        self.wait_for("document.readyState === 'complete' && location.href !== 'about:blank'")

    def type_into(self, element_id: str, text: str) -> None:
        self.evaluate(f"document.getElementById({json.dumps(element_id)}).focus()")
        self.call("Input.insertText", text=text)

    def click(self, element_id: str) -> None:
        box = self.evaluate(
            f"(() => {{ const r = document.getElementById({json.dumps(element_id)}).getBoundingClientRect();"
            " return {x: r.x + r.width / 2, y: r.y + r.height / 2}; })()"
        )
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=box["x"], y=box["y"], button="left", clickCount=1)

    def text_of(self, element_id: str) -> str:
        return self.evaluate(f"document.getElementById({json.dumps(element_id)}).textContent")

    def screenshot(self, path: Path, full_page: bool = False) -> bytes:
        """The viewport, or with ``full_page`` the whole page however far it scrolls."""
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            size = self.call("Page.getLayoutMetrics")["cssContentSize"]
            params.update(captureBeyondViewport=True, clip={"x": 0, "y": 0, "width": size["width"],
                                                            "height": size["height"], "scale": 1})
        data = base64.b64decode(self.call("Page.captureScreenshot", **params)["data"])
        path.write_bytes(data)
        return data

    def close(self) -> None:
        if getattr(self, "ws", None) is not None:
            self.ws.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self._log.close()
