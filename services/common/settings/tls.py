"""https settings: the certificate a service listens with, and a CA its outgoing client trusts."""

from __future__ import annotations

from typing import Annotated, Any, Self

from pydantic import BeforeValidator, FilePath, model_validator

from services.common.settings.base import FllmSettings


def _unset_if_blank(value: Any) -> Any:
    return None if isinstance(value, str) and not value.strip() else value


OptionalFile = Annotated[FilePath | None, BeforeValidator(_unset_if_blank)]


class TlsSettings(FllmSettings):
    """FLLM_TLS_CERT_FILE + FLLM_TLS_KEY_FILE (PEM): the service listens on https (services/common/service.py).
    FLLM_TLS_CA_FILE (PEM): CA certificates its httpx client trusts besides the default roots
    (services/common/http.py)."""

    tls_cert_file: OptionalFile = None
    tls_key_file: OptionalFile = None
    tls_ca_file: OptionalFile = None

    @model_validator(mode="after")
    def _both_or_neither(self) -> Self:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("FLLM_TLS_CERT_FILE and FLLM_TLS_KEY_FILE go together: set both or neither")
        return self

    @property
    def serves_https(self) -> bool:
        return self.tls_cert_file is not None

    def uvicorn_options(self) -> dict[str, str]:
        if self.tls_cert_file is None or self.tls_key_file is None:
            return {}
        return {"ssl_certfile": str(self.tls_cert_file), "ssl_keyfile": str(self.tls_key_file)}
