"""Test tiers: ``chain`` (real service processes), ``browser`` (chromium), ``promtool`` (Prometheus' promtool).

Folders whose every test is of one tier are marked here; a test elsewhere that needs a tier marks itself
(``pytestmark`` or a decorator). Everything runs by default; the in-process tier alone is

    pytest -m "not chain and not browser and not promtool"
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.postgres_server import PostgresServer, postgres_server

TESTS = Path(__file__).resolve().parent

# Places relative to tests/: a folder marks every test under it, a file every test in it.
TIERS: dict[str, str] = {
    "chain": "chain",
    "faults": "chain",  # fault proxies in front of a real chain
    "robustness": "chain",  # fuzzing, security and durability against a real chain
    "code_execution/test_real_server.py": "chain",  # the emulator as its own process
}


def tier_of(path: Path) -> str | None:
    """The tier a test file belongs to by where it is, or None (in-process unless it marks itself)."""
    try:
        relative = path.resolve().relative_to(TESTS).as_posix()
    except ValueError:
        return None
    for place, tier in TIERS.items():
        if relative == place or relative.startswith(place + "/"):
            return tier
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        tier = tier_of(item.path)
        if tier is not None and item.get_closest_marker(tier) is None:
            item.add_marker(getattr(pytest.mark, tier))


# One PostgreSQL server for every test that needs one (each takes databases of its own: new_database()).
@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    with postgres_server() as server:
        if server is None:
            pytest.skip("Debian's postgresql is not installed (apt-get install postgresql; .ci/run does)")
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str | None:
    """A store's backend, each test run on both: None for the embedded SQLite store, else a fresh database of
    the session's PostgreSQL server."""
    if request.param == "sqlite":
        return None
    return request.getfixturevalue("postgres").new_database()
