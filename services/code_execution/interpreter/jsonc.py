"""``json.dumps``/``json.loads`` for the interpreter, without importing the ``json`` package.

``json``'s Python modules import ``re`` (and with it ``enum``, ``functools``, ``collections``): milliseconds
of CPU at every sandbox's start. Its work is done by CPython's C accelerator, ``_json``, anyway; this
module drives ``_json`` with the arguments ``json.dumps``/``json.loads`` give it, so the text and the
values are the same. Errors are left to ``json`` itself (it raises its own exceptions and messages), and
where ``_json`` is missing (another Python implementation) ``json`` does everything.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

try:
    import _json
except ImportError:  # pragma: no cover - CPython always has it
    _json = None

WHITESPACE = " \t\n\r"  # json's WHITESPACE pattern, [ \t\n\r]*
DEFAULT_SEPARATORS = (", ", ": ")


class _DecoderContext:
    """What ``_json.make_scanner`` reads from a default ``json.JSONDecoder``."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}.__getitem__
    memo: dict[str, str] = {}  # the pure-Python scanner's; the C one keeps its own


_scan = _json.make_scanner(_DecoderContext()) if _json is not None else None


def _unserialisable(value: Any) -> Any:
    raise TypeError(f"Object of type {value.__class__.__name__} is not JSON serializable")


def dumps(value: Any, *, separators: tuple[str, str] = DEFAULT_SEPARATORS, allow_nan: bool = True,
          default: Callable[[Any], Any] | None = None) -> str:
    """``json.dumps(value, separators=..., allow_nan=..., default=...)`` (ASCII, circular check)."""
    if _json is None:
        import json

        return json.dumps(value, separators=separators, allow_nan=allow_nan, default=default)
    if isinstance(value, str):  # as JSONEncoder.encode
        return _json.encode_basestring_ascii(value)
    item_separator, key_separator = separators
    encode = _json.make_encoder({}, default or _unserialisable, _json.encode_basestring_ascii, None,
                                key_separator, item_separator, False, False, allow_nan)
    return "".join(encode(value, 0))


def _space_after(text: str, index: int) -> int:
    while index < len(text) and text[index] in WHITESPACE:
        index += 1
    return index


def _utf8(data: bytes) -> str | None:
    """``data`` as text where ``json.detect_encoding`` would take it for UTF-8 without a BOM."""
    if b"\x00" in data[:4] or data[:1] in (b"\xef", b"\xfe", b"\xff"):
        return None
    try:
        return data.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        return None


def loads(data: str | bytes) -> Any:
    """``json.loads(data)``."""
    text = data if isinstance(data, str) else _utf8(data)
    if _scan is not None and text is not None and not text.startswith("\ufeff"):
        try:
            value, end = _scan(text, _space_after(text, 0))
        except StopIteration:
            pass
        else:
            if _space_after(text, end) == len(text):
                return value
    # Not valid JSON, or not UTF-8: json's own error or decoding (and its parser where _json is missing).
    import json

    return json.loads(data)
