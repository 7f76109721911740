"""LangChain API (port 8765): starts an operation (202) and runs the agent workflow in the background."""

from services.langchain_api.app import create_app

__all__ = ["create_app"]
