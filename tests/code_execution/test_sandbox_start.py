"""What a sandbox's start costs and leaves behind: a compiled interpreter package, no import the first cell does
not need, matplotlib's font list shared read-only, no process left by a start that was cancelled."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from services.code_execution import fonts
from services.code_execution.interpreter import launcher
from services.code_execution.pool import WarmSandbox
from tests.code_execution.conftest import Harness
from tests.wait import wait_until


def new_id() -> str:
    return f"s-{uuid.uuid4().hex[:12]}"


def execution_result(harness: Harness, identifier: str, code: str) -> object:
    body = harness.execute(identifier, code).json()
    assert body["status"] == "Succeeded", body
    return body["result"]["executionResult"]


def test_the_interpreter_runs_from_a_compiled_copy_of_its_package(emulator: Harness) -> None:
    package = Path(emulator.executor.host.package_dir)
    assert package != Path(launcher.PACKAGE_DIR) and package.name == "fllm_interpreter"
    modules = {path.stem for path in Path(launcher.PACKAGE_DIR).glob("*.py")}
    compiled = {path.name.split(".")[0] for path in (package / "__pycache__").glob("*.pyc")}
    assert modules <= compiled
    assert execution_result(emulator, new_id(), "print(1)") == ""


NOT_AT_START = ("typing", "traceback", "base64", "inspect", "json", "re", "enum", "ast", "linecache", "tokenize",
                "contextlib", "functools", "collections", "signal", "struct", "types", "math")


def bare_start_imports(names: tuple[str, ...]) -> list[str]:
    """Which of ``names`` this Python build imports before any code runs (3.13 imports linecache itself)."""
    code = f"import sys; print(*sorted(m for m in {names!r} if m in sys.modules))"
    return subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True,
                          check=True).stdout.split()


def test_a_new_interpreter_has_imported_nothing_its_first_cell_does_not_need(emulator: Harness) -> None:
    code = f"import sys\nsorted(m for m in {NOT_AT_START!r} if m in sys.modules)"
    assert execution_result(emulator, new_id(), code) == bare_start_imports(NOT_AT_START)


# Its first cell defines a function, and linecache (tokenize, re) is not imported yet, unless the build imports it
# at start (3.13 does); the second imports traceback, warnings and inspect itself and shows the lines of both cells.
LINES_FIRST = "def f():\n    return 1 / 0\nimport sys\n'linecache' in sys.modules"
LINES_SECOND = """import sys
fresh = 'linecache' not in sys.modules
import inspect, traceback, warnings
def g():
    return f()
try:
    g()
except ZeroDivisionError:
    traceback.print_exc()
warnings.warn('careful')
print(fresh)
print(inspect.getsource(g), end='')
"""


def test_the_cells_lines_show_in_tracebacks_warnings_and_inspect_once_linecache_is_imported(
        emulator: Harness) -> None:
    identifier = new_id()
    at_start = bare_start_imports(("linecache",)) == ["linecache"]
    assert execution_result(emulator, identifier, LINES_FIRST) is at_start
    body = emulator.execute(identifier, LINES_SECOND).json()
    assert body["status"] == "Succeeded", body
    assert body["result"]["stdout"] == f"{not at_start}\ndef g():\n    return f()\n"
    stderr = body["result"]["stderr"]
    assert ('File "<cell-2>", line 7, in <module>\n    g()\n' in stderr
            and 'File "<cell-2>", line 5, in g\n    return f()\n' in stderr
            and 'File "<cell-1>", line 2, in f\n    return 1 / 0\n' in stderr), stderr
    assert "<cell-2>:10: UserWarning: careful\n  warnings.warn('careful')\n" in stderr, stderr
    later = emulator.execute(identifier, "f()").json()  # linecache imported: registered at once
    assert 'File "<cell-3>", line 1, in <module>\n    f()\n' in later["result"]["stderr"], later


def test_a_first_cell_that_fails_shows_its_lines(emulator: Harness) -> None:
    body = emulator.execute(new_id(), "x = 1\nprint(x is 1)\nraise KeyError('k')").json()
    assert body["status"] == "Failed"
    stderr = body["result"]["stderr"]
    assert "<cell-1>:2: SyntaxWarning" in stderr and "\n  print(x is 1)\n" in stderr, stderr
    assert "line 3, in <module>\n    raise KeyError('k')\n" in stderr, stderr


def _fresh_sandbox_runs(harness: Harness, code: str) -> dict[str, object]:
    async def run() -> dict[str, object]:
        warm: WarmSandbox = await harness.executor._spawn_warm()
        try:
            return await warm.worker.execute(code, 4096, False, 120.0)
        finally:
            await harness.executor._discard_warm(warm)

    return harness.loop.run(run(), timeout=150.0)


def test_matplotlib_reads_the_shared_font_list_and_cannot_change_it(emulator: Harness, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    if emulator.executor.host.bwrap is None:
        pytest.skip("the font list is bound into bwrap sandboxes only")
    if not any((Path(folder) / "matplotlib").is_dir() for folder in emulator.executor.host.site_packages):
        pytest.skip("matplotlib is not installed")
    host = emulator.executor.host
    kept = host.font_lists
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # built here, from nothing
    try:
        host.build_fonts()
        built = host.font_lists
        assert built and all(path.startswith(str(fonts.cache_dir())) for path in built)
        reply = _fresh_sandbox_runs(emulator, _matplotlib_probe(os.path.basename(built[0])))
    finally:
        host.font_lists = kept  # the next sandboxes: the machine's list again (this one is removed with tmp_path)
    assert reply["stdout"] == f"{launcher.MPL_CACHE} True False\nrefused\n", reply


def _matplotlib_probe(font_list: str) -> str:
    """Prints matplotlib's cache folder, whether it may write there, whether it built a font list, and the
    error that writing to the bound font list raises."""
    return (
        "import io, logging, os\nlog = io.StringIO()\nlogging.basicConfig(stream=log, level=logging.INFO)\n"
        "import matplotlib, matplotlib.font_manager\n"
        "folder = matplotlib.get_cachedir()\n"
        "print(folder, os.access(folder, os.W_OK), 'generated' in log.getvalue())\n"
        f"try:\n    open('{launcher.MPL_CACHE}/{font_list}', 'a')\n"
        "except OSError:\n    print('refused')\n"
    )


@pytest.mark.parametrize("delay_s", [0.0, 0.005, 0.03])
def test_a_cancelled_start_leaves_no_process_behind(emulator: Harness, delay_s: float) -> None:
    executor = emulator.executor
    slot = executor.sessions.new_slot()
    marker = str(slot.data_dir)

    async def start_then_cancel() -> None:
        task = asyncio.ensure_future(executor._spawn(slot))
        await asyncio.sleep(delay_s)
        task.cancel()
        try:
            worker = await task
        except asyncio.CancelledError:
            return
        await worker.close()  # it was ready before the cancel came

    def sandbox_processes() -> list[int]:
        found = []
        for entry in os.listdir("/proc"):
            try:
                if entry.isdigit() and marker in Path(f"/proc/{entry}/cmdline").read_text(errors="replace"):
                    found.append(int(entry))
            except OSError:
                continue
        return found

    try:
        emulator.loop.run(start_then_cancel())
        wait_until(lambda: not sandbox_processes(), "the cancelled sandbox's processes to end", 10.0)
    finally:
        executor.sessions.release_slot(slot)
