"""Emulator of the Azure Container Apps Dynamic Sessions data plane (port 6000).

Serves ``POST /executions`` (sync and async), ``GET /executions/{id}``, the session files and
``GET/DELETE /session`` for api-versions 2024-10-02-preview, 2025-02-02-preview and 2025-10-02-preview,
and the legacy ``POST /code/execute`` contract for 2024-02-02-preview and 2024-08-02-preview, on the
shared executor of ``services.code_execution``. The same routes answer under a pool's Azure path
(``/subscriptions/…/resourceGroups/…/sessionPools/<pool>/…``), and on https with ``FLLM_TLS_CERT_FILE`` and
``FLLM_TLS_KEY_FILE``; the Python tools of LangChain, Semantic Kernel and LlamaIndex work unmodified (compat.py).
"""

from services.dynamic_sessions.app import create_app

__all__ = ["create_app"]
