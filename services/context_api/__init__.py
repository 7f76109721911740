"""FoundationaLLM's Context API, code-session routes (port 5004).

``POST /instances/{instanceId}/codeSessions`` and, per session, ``uploadFiles``, ``downloadFiles`` and
``executeCode``, on the providers ``AzureContainerAppsCodeInterpreter`` (a Dynamic Sessions pool: the
local emulator or real Azure) and ``AzureContainerAppsCustomContainer`` (the Code Session API behind a
custom-container pool). Records live in SQLite at ``<data dir>/context_api.db``.
"""

from services.context_api.app import create_app

__all__ = ["create_app"]
