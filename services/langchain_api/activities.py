"""LangChain API's activities as FoundationaLLM's Python telemetry names and places them, with its tag
names (operation_id, agent_name, ...) beside ours (foundationallm.*).

Identity as DESIGN.md's "Beyond the original" rule: the original's ``user_identity`` tag carries the whole
X-USER-IDENTITY JSON; here there is no such tag, only the user's id in foundationallm.user_id.
"""

from __future__ import annotations

from services.common.models import UnifiedUserIdentity
from services.langchain_api.models import LLMCompletionRequest
from telemetry import conventions as c
from telemetry.context import AttributeValue


def workflow_span(template: str, workflow: str) -> str:
    """``{workflow}_tool_call`` and its kin for the agent's workflow."""
    return template.format(workflow=workflow)


def request_tags(instance_id: str, operation_id: str,
                 identity: UnifiedUserIdentity | None) -> dict[str, AttributeValue | None]:
    """langchainapi_submit_completion_request and langchainapi_create_completion_response."""
    return {
        c.TAG_LC_OPERATION_ID: operation_id, c.TAG_LC_INSTANCE_ID: instance_id,
        c.ATTR_OPERATION_ID: operation_id, c.ATTR_INSTANCE_ID: instance_id,
        c.ATTR_USER_ID: identity.user_id if identity else None,
    }


def plugin_tags(request: LLMCompletionRequest) -> dict[str, AttributeValue | None]:
    """langchain_prepare_plugin_workflow and langchain_invoke_plugin_workflow."""
    return {
        c.TAG_LC_AGENT_NAME: request.agent.name, c.TAG_LC_CONVERSATION_ID: request.session_id,
        c.TAG_LC_OPERATION_ID: request.operation_id,
        c.ATTR_AGENT_NAME: request.agent.name, c.ATTR_CONVERSATION_ID: request.session_id,
        c.ATTR_OPERATION_ID: request.operation_id,
    }

