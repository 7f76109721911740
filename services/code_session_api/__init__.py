"""FoundationaLLM's Python Code Session API (custom-container provider, port 8000).

``POST /code/execute``, ``POST /files/upload``, ``GET /files``, ``POST /files/download`` and
``POST /files/delete`` on the same executor as the Dynamic Sessions emulator; the session is the
``identifier`` query parameter the pool forwards (a default session without it).
"""

from services.code_session_api.app import create_app

__all__ = ["create_app"]
