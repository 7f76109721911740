"""matplotlib's font list, built once per machine and bound read-only into every sandbox.

A sandbox's /tmp is new for each session, and with it matplotlib's cache folder there (HOME=/tmp): without
a font list in it, every session's first ``import matplotlib.pyplot`` scans the machine's fonts again
(seconds of CPU). The list is built by matplotlib itself (``matplotlib.font_manager``, in a child process
with the sandbox's environment) into this user's cache folder, and kept for later runs.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

from services.code_execution.interpreter.launcher import CHILD_ENV, python_executable

BUILD = "import sys; sys.path[:0] = sys.argv[1:]; import matplotlib.font_manager"


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "fllm-callstack" / "matplotlib"


def font_lists(folder: Path) -> list[str]:
    """The font lists built so far (one per matplotlib font-list version)."""
    return sorted(str(path) for path in folder.glob("fontlist-v*.json"))


def build_font_list(site_packages: list[str], folder: Path, timeout_s: float = 300.0) -> list[str]:
    """Build the font list unless there is one; [] without matplotlib. Blocking (seconds): a thread."""
    if found := font_lists(folder):
        return found
    if not any((Path(packages) / "matplotlib").is_dir() for packages in site_packages):
        return []
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as scratch:  # then moved in whole: never read half written
        env = {**CHILD_ENV, "HOME": scratch, "MPLCONFIGDIR": scratch}
        subprocess.run([python_executable(), "-I", "-S", "-c", BUILD, *site_packages], env=env, cwd=scratch,
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout_s, check=False)
        for built in Path(scratch).glob("fontlist-v*.json"):
            os.chmod(built, 0o644)
            os.replace(built, folder / built.name)
    return font_lists(folder)
