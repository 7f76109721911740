"""The tracked files of a git revision, written out into a folder: what the A/B benchmarks run as their base."""

from __future__ import annotations

import subprocess
from pathlib import Path

from services.launcher import REPO


def extract(revision: str, paths: list[str], into: Path) -> Path:
    """``paths`` (all tracked files when empty) as they are at ``revision``, written into ``into``."""
    archive = subprocess.run(["git", "archive", revision, *paths], cwd=REPO, capture_output=True,
                             check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into
