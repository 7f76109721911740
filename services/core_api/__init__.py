"""Core API (port 63280): the portal's entry point; starts operations and answers status polls."""

from services.core_api.app import create_app

__all__ = ["create_app"]
