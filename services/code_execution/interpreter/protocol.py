"""Frames of a 4-byte big-endian length followed by one UTF-8 JSON object.

    <- {"op": "ready", "pid", "uid"}                       (once, after the sandbox is set up)
    -> {"op": "exec", "code", "max_output", "named_results"}
    <- {"status", "stdout", "stderr", "result", "results", "error", "time_ms", ...}
    -> {"op": "ping"}                                      <- {"ok": true}
"""

from __future__ import annotations

import os

from . import jsonc

# typing is not imported at run time: every sandbox's start pays for each module it imports.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

HEADER_SIZE = 4  # big-endian length (int.to_bytes: struct would be one more module at every start)
MAX_FRAME = 64 * 1024 * 1024


def encode_frame(message: dict[str, Any]) -> bytes:
    body = jsonc.dumps(message, separators=(",", ":")).encode()
    return len(body).to_bytes(HEADER_SIZE, "big") + body


def decode_header(header: bytes) -> int:
    if len(header) != HEADER_SIZE:
        raise ValueError(f"a frame header is {HEADER_SIZE} bytes, not {len(header)}")
    length = int.from_bytes(header, "big")
    if length > MAX_FRAME:
        raise ValueError(f"frame of {length} bytes exceeds the {MAX_FRAME}-byte limit")
    return length


def _read_exactly(fd: int, size: int) -> bytes | None:
    chunks, remaining = [], size
    while remaining:
        chunk = os.read(fd, remaining)
        if not chunk:
            return None
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def read_frame(fd: int) -> dict[str, Any] | None:
    header = _read_exactly(fd, HEADER_SIZE)
    if header is None:
        return None
    body = _read_exactly(fd, decode_header(header))
    return None if body is None else jsonc.loads(body)


def write_frame(fd: int, message: dict[str, Any]) -> None:
    view = memoryview(encode_frame(message))
    while view:
        view = view[os.write(fd, view) :]
