"""State API (port 5014): operations, their log entries and results, persisted in SQLite."""

from services.state_api.app import create_app

__all__ = ["create_app"]
