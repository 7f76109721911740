"""What can go wrong between a portal client and the Core API, as exceptions that say so plainly."""

from __future__ import annotations

import httpx

from services.common.errors import HopError
from telemetry import conventions as c


class PortalError(Exception):
    """Base of every error a PortalClient raises."""


class CoreApiError(HopError, PortalError):
    """Core answered, but not with what a client can use (non-2xx, or a body that is not an operation)."""

    def __init__(self, message: str, status_code: int | None = None, detail: str = "") -> None:
        super().__init__(c.CORE_API, message, status_code)
        self.detail = detail


class CoreUnavailableError(HopError, PortalError):
    """Core could not be reached, or did not answer in time."""

    def __init__(self, message: str) -> None:
        super().__init__(c.CORE_API, message)


class OperationTimeoutError(PortalError):
    def __init__(self, operation_id: str, timeout_s: float, polls: int, last_status_message: str | None) -> None:
        message = f"operation {operation_id} did not end within {timeout_s:g} s ({polls} status polls)"
        if last_status_message:
            message += f"; last status message: {last_status_message}"
        super().__init__(message)
        self.operation_id = operation_id
        self.timeout_s = timeout_s
        self.polls = polls


def error_detail(response: httpx.Response) -> str:
    """The reason in an error body: problem+json ``detail`` and its field errors, FastAPI's ``detail``,
    or the start of a text body."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:300] or response.reason_phrase
    if not isinstance(body, dict):
        return str(body)[:300]
    detail = body.get("detail") or body.get("title") or body.get("message") or ""
    if isinstance(detail, list):  # FastAPI's default validation body
        detail = "; ".join(f"{'.'.join(map(str, e.get('loc', [])))}: {e.get('msg', '')}" for e in detail)
    errors = body.get("errors")
    if isinstance(errors, list) and errors:
        fields = ", ".join(str(e.get("field")) for e in errors if isinstance(e, dict) and e.get("field"))
        if fields and fields not in str(detail):
            detail = f"{detail} (fields: {fields})"
    return str(detail)[:500]


def failed_response(method: str, url: str, response: httpx.Response) -> CoreApiError:
    detail = error_detail(response)
    return CoreApiError(f"answered {response.status_code} to {method} {url}: {detail}", response.status_code, detail)
