"""The exec loop of a session's interpreter: cells, captured output, results and named results.

Started inside bwrap as ``python -I -S -B -c '<bootstrap>' '<json config>'`` (see ``launcher``).
A trailing expression's value is the result (a JSON value, or its ``repr``; a displayed figure is an
image result: see ``results``); variables named by the last statement are the named results
(FoundationaLLM's code session API); a pandas DataFrame result is saved as CSV in /mnt/data.
"""

from __future__ import annotations

import _ast  # ast's node classes and flag, without ast's own imports (enum, contextlib)
import builtins
import io
import os
import sys
import time

from . import jsonc, protocol, sandbox
from . import results as cell_results
from .sources import CellSources

# typing, json, ast, linecache, contextlib are not imported at run time: every sandbox's start pays for
# each module it imports (see jsonc, sources).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

CELL_PREFIX = "<cell-"
RESULT_VALUE_LIMIT = 1024 * 1024


class Capture(io.TextIOBase):
    """A text stream that keeps the first ``limit`` characters and counts everything written."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.parts: list[str] = []
        self.kept = 0
        self.size_bytes = 0

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        self.size_bytes += len(text) if text.isascii() else len(text.encode("utf-8", "replace"))
        room = self.limit - self.kept
        if room > 0 and text:
            piece = text[:room]
            self.parts.append(piece)
            self.kept += len(piece)
        return len(text)

    def writable(self) -> bool:
        return True

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def value(self) -> str:
        return _clean("".join(self.parts))


def _clean(text: str) -> str:
    """Text that survives JSON and UTF-8 encoding (lone surrogates replaced)."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")


def _names_of(node: _ast.AST) -> list[str]:
    if isinstance(node, _ast.Name):
        return [node.id]
    if isinstance(node, _ast.Tuple | _ast.List) and all(isinstance(e, _ast.Name) for e in node.elts):
        return [e.id for e in node.elts]  # type: ignore[attr-defined]
    return []


def last_statement_names(tree: _ast.Module) -> list[str]:
    """FoundationaLLM's rule: the variables a final bare-name expression or assignment names."""
    if not tree.body:
        return []
    last = tree.body[-1]
    if isinstance(last, _ast.Expr):
        return _names_of(last.value)
    if isinstance(last, _ast.Assign):
        names: list[str] = []
        for target in last.targets:
            found = _names_of(target)
            if not found:
                return []
            names.extend(found)
        return names
    return []


def _json_default(o: Any) -> Any:
    """JSON for the values FoundationaLLM's code session API serialises (libraries only if loaded)."""
    import datetime
    import decimal
    import uuid

    if isinstance(o, datetime.datetime | datetime.date | datetime.time):
        return o.isoformat()
    if isinstance(o, decimal.Decimal):
        return float(o)
    if isinstance(o, uuid.UUID):
        return str(o)
    if isinstance(o, set | frozenset):
        return list(o)
    if isinstance(o, bytes | bytearray):
        return o.decode("utf-8", errors="replace")
    module = type(o).__module__.split(".")[0]
    if module in ("numpy", "pandas"):
        for method, args in (("isoformat", ()), ("tolist", ()), ("item", ()), ("to_dict", ())):
            if hasattr(o, method):
                return getattr(o, method)(*args)
    raise TypeError(f"Object of type {o.__class__.__name__} is not JSON serializable")


def _dataframe_summary(name: str, value: Any) -> Any:
    """FoundationaLLM saves a DataFrame result as CSV in /mnt/data and returns a preview instead."""
    pandas = sys.modules.get("pandas")
    if pandas is None:
        return value
    if isinstance(value, pandas.DataFrame):
        stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime()) + f"{time.time_ns() // 1000 % 1_000_000:06d}"
        safe = "".join(c for c in name if c.isalnum() or c in "_-") or "df"
        value.to_csv(f"{safe}_{stamp}.csv", index=False)
        preview = value.head(10).reset_index().rename(columns={"index": ""}).to_dict(orient="records")
        return {
            "type": "dataframe",
            "details": "The dataframe has been saved to a CSV file. A preview of the first ten rows of data "
            "has been generated. To view all the data, examine the CSV file that was returned.",
            "preview": preview,
        }
    if isinstance(value, pandas.Series):
        return {"type": "series", "details": "The series data is displayed below.", "data": value.to_dict()}
    return value


def named_results(names: list[str], namespace: dict[str, Any]) -> dict[str, str]:
    results: dict[str, str] = {}
    for name in names:
        if name not in namespace:
            continue
        try:
            encoded = jsonc.dumps(_dataframe_summary(name, namespace[name]), default=_json_default)
        except Exception:  # values that cannot be serialised are dropped, as in the original
            continue
        if len(encoded) <= RESULT_VALUE_LIMIT:
            results[name] = _clean(encoded)
    return results


def _user_traceback(error: BaseException, sources: CellSources) -> str:
    import traceback  # only for a failure: not at every sandbox's start

    sources.flush()
    tb = error.__traceback__
    while tb is not None and not tb.tb_frame.f_code.co_filename.startswith(CELL_PREFIX):
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(error), error, tb))


class Interpreter:
    def __init__(self) -> None:
        module = type(sys)("__main__")
        module.__dict__["__builtins__"] = builtins
        sys.modules["__main__"] = module
        self.namespace = module.__dict__
        self.count = 0
        self.sources = CellSources()
        self.sink = Capture(0)
        sys.stdout = sys.stderr = self.sink

    def execute(self, code: str, max_output: int, want_names: bool) -> dict[str, Any]:
        self.count += 1
        filename = f"{CELL_PREFIX}{self.count}>"
        self.sources.add(filename, code)
        out, err = Capture(max_output), Capture(max_output)
        status, result, error, results = "Succeeded", "", None, {}
        sys.stdout, sys.stderr = out, err
        started = time.perf_counter()
        try:
            # ast.parse(code, filename); dont_inherit: the cell gets none of this module's __future__ imports
            tree = compile(code, filename, "exec", _ast.PyCF_ONLY_AST, dont_inherit=True)
            names = last_statement_names(tree) if want_names else []
            tail = tree.body.pop() if tree.body and isinstance(tree.body[-1], _ast.Expr) else None
            if tree.body:
                exec(compile(tree, filename, "exec", dont_inherit=True), self.namespace)
            value = None
            if tail is not None:
                value = eval(compile(_ast.Expression(tail.value), filename, "eval", dont_inherit=True), self.namespace)
                if value is not None:
                    self.namespace["_"] = value
                    result = cell_results.json_or_repr(value, max_output, _clean)
                elif not isinstance(tail.value, _ast.Call):
                    result = None  # as the service's examples: `a = None; a` -> null, `print(..)` -> ""
            image = cell_results.displayed_figure(value)
            if image is not None:
                result = image
            results = named_results(names, self.namespace) if names else {}
        except SystemExit as exit_:
            if exit_.code not in (None, 0):
                status, error = "Failed", self._failure(exit_, err)
        except BaseException as failure:  # noqa: BLE001 - everything the code raises is its result
            status, error = "Failed", self._failure(failure, err)
        finally:
            if status == "Failed":
                _quietly(cell_results.close_figures)
            elapsed = time.perf_counter() - started
            sys.stdout = sys.stderr = self.sink
            self.sources.flush()  # linecache imported by a finder other than sources' own
        return {
            "status": status,
            "stdout": out.value(),
            "stderr": err.value(),
            "stdout_bytes": out.size_bytes,
            "stderr_bytes": err.size_bytes,
            "result": result,
            "results": results,
            "error": error,
            "time_ms": int(round(elapsed * 1000)),
        }

    def _failure(self, failure: BaseException, err: Capture) -> dict[str, str]:
        text = _clean(_user_traceback(failure, self.sources))
        err.write(text)
        return {"name": type(failure).__name__, "message": _clean(str(failure))[:2000], "traceback": text[-65536:]}


def _quietly(action: Any) -> None:
    try:  # noqa: SIM105 - contextlib.suppress: one import more at every start
        action()
    except Exception:  # the figures of a failed cell: best-effort cleanup
        pass


def preimport(modules: list[str]) -> None:
    """Import the heavy data packages before a session takes this interpreter (FLLM_CODE_PREIMPORT)."""
    for name in modules:
        try:  # noqa: SIM105 - contextlib.suppress: one import more at every start
            __import__(name)
        except Exception:  # a missing package is the code's to find, not the sandbox's
            pass


def serve(config: dict[str, Any]) -> None:
    """Sandbox this process, then answer requests until the executor closes the pipe."""
    requests, answers, uid = sandbox.prepare(config)
    sys.path.extend(folder for folder in config.get("site_packages", []) if folder not in sys.path)
    sys.path[:] = [p for p in sys.path if p != config.get("package_parent")]  # it is all imported now
    sys.path.insert(0, "")  # as in Jupyter: modules next to the data can be imported
    cell_results.quiet_show()
    preimport(list(config.get("preimport", [])))
    interpreter = Interpreter()
    protocol.write_frame(answers, {"op": "ready", "pid": os.getpid(), "uid": uid})
    while (request := protocol.read_frame(requests)) is not None:
        if request.get("op") == "exec":
            reply = interpreter.execute(request["code"], int(request["max_output"]), bool(request["named_results"]))
        else:
            reply = {"ok": request.get("op") == "ping"}
        protocol.write_frame(answers, reply)
    os._exit(0)


def main() -> None:
    serve(jsonc.loads(sys.argv[1]) if len(sys.argv) > 1 else {})
