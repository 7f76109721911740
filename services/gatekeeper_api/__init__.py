"""Gatekeeper API (port 5295): checks the prompt, then passes the operation on to Orchestration."""

from services.gatekeeper_api.app import create_app

__all__ = ["create_app"]
