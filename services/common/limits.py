"""Request checks every service applies to a JSON body before the app reads it: a size limit, and no
lone UTF-16 surrogates (``"\\ud800"`` is valid JSON but not Unicode: it would fail later, on encoding)."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.common.errors import problem
from services.common.settings import RequestLimits

# JSON bodies (FLLM_MAX_JSON_BODY_BYTES); file uploads have their own limits.
MAX_JSON_BODY_BYTES = RequestLimits().max_json_body_bytes


def _has_lone_surrogate(body: bytes) -> bool:
    if b"\\ud" not in body and b"\\uD" not in body:  # the common case: one scan, no parsing
        return False
    try:
        json.dumps(json.loads(body), ensure_ascii=False).encode()
    except UnicodeEncodeError:
        return True
    except ValueError:  # not JSON at all: the app's own validation answers that
        return False
    return False


class JsonBodyLimitMiddleware:
    """413 for a JSON body larger than the limit (declared or streamed), 400 for one that is not Unicode."""

    def __init__(self, app: ASGIApp, limit: int = MAX_JSON_BODY_BYTES) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope.get("headers") or []) if scope["type"] == "http" else {}
        if b"json" not in headers.get(b"content-type", b""):
            await self.app(scope, receive, send)
            return
        length = headers.get(b"content-length", b"")
        if length.isdigit() and int(length) > self.limit:
            await self._too_large(scope, receive, send)
            return
        messages: list[Message] = []
        body = b""
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            body += message.get("body", b"")
            if len(body) > self.limit:
                await self._too_large(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        if _has_lone_surrogate(body):
            response = problem(400, "Invalid request", "The JSON body has a string that is not valid Unicode.",
                               [{"field": "body", "message": "lone UTF-16 surrogate in a string"}])
            await response(scope, receive, send)
            return

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem(413, "Request body too large", f"The JSON body is larger than {self.limit} bytes.",
                           [{"field": "body", "message": f"at most {self.limit} bytes"}])
        await response(scope, receive, send)
