"""What the pool's widely used clients send that a strict reading would refuse, accepted so that they work
unmodified (whether Azure's own service accepts it is not documented).

Semantic Kernel's ``SessionsPythonTool`` sets ``Content-Type: application/json`` on its shared httpx client
for its first execution and keeps it: every later upload (a multipart body) arrives labelled as JSON, with
no boundary. A body that opens with a multipart delimiter line is read as the multipart body it is, its
boundary taken from that line (RFC 2046 §5.1.1: the delimiter is ``--`` and the boundary, then CRLF).
"""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# The boundary's characters and length (1-70) as RFC 2046 §5.1.1 allows them (space only inside).
_DELIMITER = re.compile(rb"--([0-9A-Za-z'()+_,./:=?-](?:[0-9A-Za-z'()+_,./:=? -]{0,68}[0-9A-Za-z'()+_,./:=?-])?)\r\n")
_PEEK_BYTES = 74  # "--" + 70 + CRLF


async def multipart_request(request: Request) -> Request:
    """``request``, or the same request relabelled ``multipart/form-data`` when its body is one."""
    if request.headers.get("content-type", "").lower().startswith("multipart/"):
        return request
    messages: list[Message] = []
    head = b""
    while len(head) < _PEEK_BYTES:
        message = await request.receive()
        messages.append(message)
        if message["type"] != "http.request":
            break
        head += message.get("body", b"")
        if not message.get("more_body", False):
            break

    async def replay() -> Message:
        return messages.pop(0) if messages else await request.receive()

    scope = dict(request.scope)
    match = _DELIMITER.match(head)
    if match is not None:
        headers = [(key, value) for key, value in scope["headers"] if key.lower() != b"content-type"]
        scope["headers"] = [*headers, (b"content-type", b'multipart/form-data; boundary="' + match[1] + b'"')]
    return Request(scope, replay)


# A pool's management endpoint as Azure gives it: https://<region>.dynamicsessions.io/subscriptions/<sub>/
# resourceGroups/<rg>/sessionPools/<pool>. Clients append their paths to it.
_POOL_PATH = re.compile(r"/subscriptions/[^/]+/resourceGroups/[^/]+/sessionPools/[^/]+(?=/|$)", re.IGNORECASE)


class PoolPathMiddleware:
    """Serves the data plane under a pool's Azure path too: an endpoint copied from the portal works as is.

    The prefix becomes the request's ``root_path``: routes match the rest, and URLs the service builds
    (``Operation-Location``) keep it.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope.get("root_path") and (match := _POOL_PATH.match(scope["path"])):
            scope = {**scope, "root_path": match[0]}
        await self.app(scope, receive, send)
