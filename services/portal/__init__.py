"""FoundationaLLM's User Portal (port 3000): the page at ``/``, its JSON routes, and PortalClient,
the Python mirror of the portal's api.ts that the CLI and the benchmarks use too."""

from services.portal.app import create_app
from services.portal.client import AskResult, PortalClient
from services.portal.errors import CoreApiError, CoreUnavailableError, OperationTimeoutError, PortalError

__all__ = [
    "AskResult",
    "CoreApiError",
    "CoreUnavailableError",
    "OperationTimeoutError",
    "PortalClient",
    "PortalError",
    "create_app",
]
