"""Reading Core's LongRunningOperation the way the User Portal does, and the adaptive poll interval."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from services.portal.files import files_of

TERMINAL = frozenset({"Completed", "Failed"})
IN_PROGRESS = "InProgress"


@dataclass(frozen=True)
class OperationView:
    """What a client shows of one status answer."""

    operation_id: str
    status: str
    status_message: str | None
    answer: str | None  # the agent Message's text, once the operation has ended
    trace_id: str | None
    failed_hop: str | None = None
    files: list[dict[str, str]] = field(default_factory=list)  # images and files of the answer (files.py)

    @property
    def done(self) -> bool:
        return self.status in TERMINAL

    def to_json(self) -> dict[str, Any]:
        return {
            "operation_id": self.operation_id,
            "status": self.status,
            "status_message": self.status_message,
            "answer": self.answer,
            "trace_id": self.trace_id,
            "failed_hop": self.failed_hop,
            "files": self.files,
            "done": self.done,
        }


def view_of(body: dict[str, Any], operation_id: str = "") -> OperationView:
    """The UI stops on the agent Message's ``result.status``; the operation ``status`` counts too, so a
    downstream that ends the operation without a Message (or the reverse) does not leave it polling."""
    result = body.get("result") if isinstance(body.get("result"), dict) else {}
    message_status = str(result.get("status") or "")
    operation_status = str(body.get("status") or IN_PROGRESS)
    status = message_status if message_status in TERMINAL else operation_status
    text = result.get("text")
    status_message = body.get("status_message")
    if status not in TERMINAL and not status_message and isinstance(text, str):
        status_message = text  # Core puts the progress text into the Message while in progress
    return OperationView(
        operation_id=str(body.get("operation_id") or operation_id),
        status=status,
        status_message=status_message,
        answer=(text if isinstance(text, str) else (status_message or "")) if status in TERMINAL else None,
        trace_id=body.get("trace_id") or None,
        failed_hop=body.get("failed_hop") or None,
        files=files_of(result) if status in TERMINAL else [],
    )


class AdaptiveInterval:
    """Sleeps between polls: a few ms first, then growing by ``factor`` up to ``cap``.

    The original portal waits a fixed interval (1 s by default) before every poll, which adds up to
    that second to every answer; short operations end within the first few short sleeps here.
    """

    def __init__(self, initial_s: float = 0.005, factor: float = 1.5, cap_s: float = 0.25) -> None:
        self.initial_s, self.factor, self.cap_s = initial_s, factor, cap_s
        self._next = initial_s

    def next(self) -> float:
        delay = self._next
        self._next = min(self._next * self.factor, self.cap_s)
        return min(delay, self.cap_s)

    def reset(self) -> None:
        self._next = self.initial_s
