"""Orchestration API (port 5810): builds the agent (tools, code sessions) and starts LangChain."""

from services.orchestration_api.app import create_app

__all__ = ["create_app"]
