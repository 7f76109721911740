"""The interpreter's JSON (``jsonc``: CPython's ``_json`` driven as ``json`` drives it) and its frames: the same
text, values and errors as ``json`` and the former ``struct`` framing, with and without ``_json``."""

from __future__ import annotations

import json
import struct
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from services.code_execution.interpreter import jsonc, protocol, results

NESTED: dict[str, Any] = {"a": [1, {"b": [2, [3, {"c": None}]]}]}
for _ in range(40):
    NESTED = {"n": [NESTED, "x"]}

VALUES: list[Any] = [
    "plain", "", "é ☃ 𝄞 \u2028 \x00 \x1f \" \\ / \t\n", "\ud800 lone surrogate", 0, -1, 2**64, -(10**300),
    True, False, None, 1.5, -0.0, 1e-320, 1.7976931348623157e308, 0.1 + 0.2,
    [], {}, [1, [2, [3, []]]], {"k": {"k": {"k": {}}}}, NESTED,
    {3: "int key", 2.5: "float key", True: "bool key", None: "none key", "é": "unicode key"},
    (1, 2), [(3, "tuple in list")], {"empty string": ""},
]
SPECIAL_FLOATS = [float("nan"), float("inf"), float("-inf"), [1.0, float("nan")], {"x": float("-inf")}]
SEPARATORS = [(", ", ": "), (",", ":")]


@pytest.fixture(params=["_json", "json fallback"])
def implementation(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    if request.param == "json fallback":  # another Python without _json: json itself
        monkeypatch.setattr(jsonc, "_json", None)
        monkeypatch.setattr(jsonc, "_scan", None)
    yield request.param


def outcome(call: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return "value", call()
    except Exception as error:  # noqa: BLE001 - the comparison is of the errors too
        return type(error).__name__, str(error)


@pytest.mark.parametrize("separators", SEPARATORS)
@pytest.mark.parametrize("value", VALUES, ids=range(len(VALUES)))
def test_dumps_writes_what_json_dumps_writes(implementation: str, value: Any, separators: tuple[str, str]) -> None:
    assert jsonc.dumps(value, separators=separators) == json.dumps(value, separators=separators)


@pytest.mark.parametrize("allow_nan", [True, False])
@pytest.mark.parametrize("value", SPECIAL_FLOATS, ids=range(len(SPECIAL_FLOATS)))
def test_nan_and_infinity_as_json_writes_or_refuses_them(implementation: str, value: Any, allow_nan: bool) -> None:
    expected = outcome(lambda: json.dumps(value, allow_nan=allow_nan))
    assert outcome(lambda: jsonc.dumps(value, allow_nan=allow_nan)) == expected
    assert expected[0] == ("value" if allow_nan else "ValueError")


class Odd:
    pass


def circular() -> list[Any]:
    loop: list[Any] = []
    loop.append(loop)
    return loop


@pytest.mark.parametrize("value", [Odd(), {"k": {1, 2}}, {(1, 2): "tuple key"}, circular(), 10**5000, b"bytes"],
                         ids=["object", "set", "tuple-key", "circular", "huge-int", "bytes"])
def test_dumps_fails_as_json_dumps_fails(implementation: str, value: Any) -> None:
    expected = outcome(lambda: json.dumps(value))
    assert expected[0] != "value"
    assert outcome(lambda: jsonc.dumps(value)) == expected


def test_a_default_function_serialises_what_json_cannot(implementation: str) -> None:
    def default(value: Any) -> Any:
        if isinstance(value, set):
            return sorted(value)
        raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")

    for value in ({"s": {3, 1, 2}, "nested": [{"t": {"é"}}]}, {"odd": Odd()}):
        assert outcome(lambda v=value: jsonc.dumps(v, default=default)) == outcome(
            lambda v=value: json.dumps(v, default=default))


TEXTS: list[str | bytes] = [
    '{"op":"exec","code":"print(1)","max_output":4096,"named_results":true}', " \n\t[1, 2.5e3, -0, null]\r\n ",
    '"\\ud83d\\ude00 \\u00e9"', '{"a": NaN, "b": Infinity, "c": -Infinity}', "123456789012345678901234567890",
    '{"dup": 1, "dup": 2}', '"caf\u00e9"'.encode(), b'{"b": [true, false]}', "\ufeff{}", b"\xef\xbb\xbf{}",
    '{"a": 1}'.encode("utf-16"), '[1, 2]'.encode("utf-16-le"), '{"a": 1}'.encode("utf-32-be"),
    b"\xff\xfe", b"\x80{}", "", "   ", "[1, 2", '{"a": 1} x', "{'a': 1}", "[1,]", "nul", '"\x01"', "[1] [2]", b"",
]


@pytest.mark.parametrize("text", TEXTS, ids=range(len(TEXTS)))
def test_loads_reads_and_refuses_what_json_loads_does(implementation: str, text: str | bytes) -> None:
    expected = outcome(lambda: json.loads(text))
    got = outcome(lambda: jsonc.loads(text))
    if expected[0] == "value":
        assert got[0] == "value" and json.dumps(got[1]) == json.dumps(expected[1])  # NaN != NaN: compare as text
    else:
        assert got == expected


def test_on_cpython_jsonc_runs_the_c_accelerator() -> None:
    assert jsonc._json is not None and jsonc._scan is not None  # CPython: _json does the work


@pytest.mark.parametrize("message", [{"op": "ready", "pid": 7, "uid": 1000},
                                     {"stdout": "é ☃\n" * 3, "result": [1.5, float("nan")], "results": {}}])
def test_frames_are_the_former_struct_framing_of_json_text(message: dict[str, Any]) -> None:
    body = json.dumps(message, separators=(",", ":")).encode()
    frame = protocol.encode_frame(message)
    assert frame == struct.pack(">I", len(body)) + body
    assert protocol.decode_header(frame[: protocol.HEADER_SIZE]) == len(body)


def test_a_header_of_the_wrong_size_or_length_is_refused() -> None:
    with pytest.raises(ValueError, match="4 bytes"):
        protocol.decode_header(b"\x00\x00\x01")
    with pytest.raises(ValueError, match="exceeds"):
        protocol.decode_header(struct.pack(">I", protocol.MAX_FRAME + 1))


@pytest.mark.parametrize("text", [
    "FigureCanvasAgg is non-interactive, and thus cannot be shown", "FigureCanvasPdf is NON-INTERACTIVE, and thus "
    "cannot be shown (really)", "non-interactive, and thus cannot be shown", "it is non-interactive, and thus "
    "cannot be\nshown", "first line\nFigureCanvasAgg is non-interactive, and thus cannot be shown", "cannot be shown",
])
def test_the_plt_show_filter_matches_what_its_former_pattern_matched(text: str) -> None:
    import re

    former = re.compile(".*" + results.NOT_SHOWN, re.I)
    assert results._NotShownMessage().match(text) == bool(former.match(text))


def test_quiet_show_silences_only_the_cannot_be_shown_warning() -> None:
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        results.quiet_show()
        warnings.warn("FigureCanvasAgg is non-interactive, and thus cannot be shown", UserWarning, stacklevel=1)
        warnings.warn("something else", UserWarning, stacklevel=1)
    assert [str(w.message) for w in shown] == ["something else"]
