"""Core API's activities as FoundationaLLM's CoreAPI ActivitySource emits them: SERVER spans under the
request's server span, with the FoundationaLLM-* tags (TelemetryActivityTagNames), beside our own spans
and foundationallm.* attributes. Identity as DESIGN.md's "Beyond the original" rule: ids and a keyed
hash of the UPN, never the UPN itself."""

from __future__ import annotations

from opentelemetry.util.types import AttributeValue

from services.common.models import UnifiedUserIdentity
from telemetry import conventions as c
from telemetry.context import hashed


def upn_tag(upn: str | None) -> str:
    """FoundationaLLM-UPN: HMAC-SHA256 (deployment key) of the case-folded UPN, 16 hex digits, or N/A."""
    return hashed(upn.casefold()) if upn else c.TAG_FLLM_NOT_AVAILABLE


def identity_tags(instance_id: str, identity: UnifiedUserIdentity | None) -> dict[str, AttributeValue]:
    return {
        c.TAG_FLLM_INSTANCE_ID: instance_id,
        c.TAG_FLLM_UPN: upn_tag(identity.upn if identity else None),
        c.TAG_FLLM_USER_ID: (identity.user_id if identity else None) or c.TAG_FLLM_NOT_AVAILABLE,
    }


def start_completion_tags(instance_id: str, operation_id: str, conversation_id: str | None,
                          identity: UnifiedUserIdentity) -> dict[str, AttributeValue]:
    return {**identity_tags(instance_id, identity), c.TAG_FLLM_OPERATION_ID: operation_id,
            c.TAG_FLLM_CONVERSATION_ID: conversation_id or c.TAG_FLLM_NOT_AVAILABLE}


def files_download_tags(instance_id: str, provider: str, file_id: str,
                        identity: UnifiedUserIdentity) -> dict[str, AttributeValue]:
    return {**identity_tags(instance_id, identity), c.TAG_FLLM_FILE_PROVIDER: provider or c.TAG_FLLM_NOT_AVAILABLE,
            c.TAG_FLLM_FILE_ID: file_id or c.TAG_FLLM_NOT_AVAILABLE}
