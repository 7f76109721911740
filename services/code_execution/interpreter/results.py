"""What a cell gives back as its result, the way the Dynamic Sessions data plane (a Jupyter kernel) does.

- A JSON value where the kernel's value is one: numbers, booleans, and lists/dicts of JSON values
  (``2 + 2`` -> ``4``, not ``"4"``). Strings, tuples, NaN and other objects stay their ``repr`` text
  (Jupyter's ``text/plain``), cut to the output limit.
- A figure the cell displayed: ``{"type": "image", "format": "png", "base64_data": ...}``. As with
  Jupyter's inline backend, every pyplot figure still open when the cell ends is displayed (so
  ``plt.show()`` under the non-interactive Agg backend, or a figure left open) and then closed; a
  ``Figure`` as the trailing expression is displayed too. The last figure is the result (a PNG above
  ``MAX_IMAGE_BYTES`` is replaced by a note: save such a figure under /mnt/data).

Standard library only: matplotlib is touched only when the code imported it.
"""

from __future__ import annotations

import io
import sys
import warnings

from . import jsonc

# typing is not imported at run time: every sandbox's start pays for each module it imports.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

MAX_JSON_DEPTH = 32
FIGURE_DPI = 100
# Larger PNGs are not inlined (each hop's JSON body limit is 16 MiB): the code should save them as a file.
MAX_IMAGE_BYTES = 4 * 1024 * 1024


def _is_json(value: Any, depth: int = 0) -> bool:
    if depth > MAX_JSON_DEPTH:
        return False
    if value is None or isinstance(value, bool | int | str):
        return True
    if isinstance(value, float):
        import math  # only with a result: not at every sandbox's start

        return math.isfinite(value)
    if type(value) is list:
        return all(_is_json(item, depth + 1) for item in value)
    if type(value) is dict:
        return all(isinstance(key, str) and _is_json(item, depth + 1) for key, item in value.items())
    return False


def json_or_repr(value: Any, limit: int, clean: Any) -> Any:
    """The result of a trailing expression whose value is not None."""
    if type(value) in (bool, int, float, list, dict) and _is_json(value):
        try:
            encoded = jsonc.dumps(value, allow_nan=False)
        except (ValueError, TypeError, RecursionError):
            encoded = None
        if encoded is not None and len(encoded) <= limit:
            return jsonc.loads(encoded)  # a copy: nothing of the namespace crosses the protocol by reference
    return clean(repr(value)[:limit])


NOT_SHOWN = "non-interactive, and thus cannot be shown"


class _NotShownMessage:
    """``re.compile(".*" + NOT_SHOWN, re.I)`` as a warnings filter's message, without importing ``re`` at every
    start (``filterwarnings`` compiles its pattern with it): the filters call ``match(text)``."""

    def match(self, text: str) -> bool:
        return NOT_SHOWN in text.split("\n", 1)[0].casefold()

    def __repr__(self) -> str:
        return f"<message matching '.*{NOT_SHOWN}'>"


def quiet_show() -> None:
    """``plt.show()`` under Agg warns that it cannot show; here the figure is displayed at the cell's end."""
    add_filter = getattr(warnings, "_add_filter", None)
    if add_filter is None:  # not CPython's warnings module: its public function (which imports re)
        warnings.filterwarnings("ignore", message=".*" + NOT_SHOWN, category=UserWarning)
    else:
        add_filter("ignore", _NotShownMessage(), UserWarning, None, 0, append=False)


def is_figure(value: Any) -> bool:
    figure_module = sys.modules.get("matplotlib.figure")
    return figure_module is not None and isinstance(value, figure_module.Figure)


def _png(figure: Any) -> dict[str, str] | str:
    import base64  # only with a figure: not at every sandbox's start

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=FIGURE_DPI, bbox_inches="tight")
    if buffer.tell() > MAX_IMAGE_BYTES:
        return (f"<a {buffer.tell()}-byte figure, too large to return as an image result "
                f"(limit {MAX_IMAGE_BYTES}); save it under /mnt/data instead>")
    return {"type": "image", "format": "png", "base64_data": base64.b64encode(buffer.getvalue()).decode("ascii")}


def displayed_figure(trailing: Any) -> dict[str, str] | str | None:
    """The image of the last figure the cell displayed (pyplot's open figures are closed after)."""
    if trailing is not None and is_figure(trailing):
        close_figures()
        return _png(trailing)
    pyplot = sys.modules.get("matplotlib.pyplot")
    numbers = pyplot.get_fignums() if pyplot is not None else []
    if not numbers:
        return None
    try:
        return _png(pyplot.figure(numbers[-1]))
    finally:
        pyplot.close("all")


def close_figures() -> None:
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None and pyplot.get_fignums():
        pyplot.close("all")
