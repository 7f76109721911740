"""The code session providers the Context API calls, by FoundationaLLM's provider names."""

from services.context_api.providers.base import (
    DownloadTooLargeError,
    PoolClient,
    ProviderError,
    SessionFile,
    SessionTarget,
)
from services.context_api.providers.code_interpreter import CodeInterpreterProvider
from services.context_api.providers.custom_container import CustomContainerProvider
from services.context_api.providers.tokens import TokenSource

__all__ = [
    "CodeInterpreterProvider",
    "CustomContainerProvider",
    "DownloadTooLargeError",
    "PoolClient",
    "ProviderError",
    "SessionFile",
    "SessionTarget",
    "TokenSource",
]
