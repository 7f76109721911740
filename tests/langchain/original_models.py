"""Field sets of FoundationaLLM's own Python models (foundationallm/foundationallm, src/python/plugins/core/
pkg/foundationallm/models/...), transcribed by hand as test data: what LangChain API's answers must carry."""

from __future__ import annotations

# models/orchestration/completion_response.py: CompletionResponse
COMPLETION_RESPONSE = frozenset({
    "id", "operation_id", "user_prompt", "user_prompt_rewrite", "full_prompt", "completion", "content",
    "analysis_results", "content_artifacts", "conversation_name", "user_prompt_embedding", "prompt_tokens",
    "completion_tokens", "total_tokens", "total_cost", "errors", "is_error",
})
# models/orchestration/message_content_item_base.py (extra="forbid") and its three subclasses
CONTENT_ITEM_BASE = frozenset({"type", "text", "agent_capability_category"})
TEXT_ITEM = CONTENT_ITEM_BASE | {"annotations", "value"}  # openai_text_message_content_item.py
IMAGE_FILE_ITEM = CONTENT_ITEM_BASE | {"file_id", "file_url"}  # openai_image_file_message_content_item.py
FILE_PATH_ITEM = CONTENT_ITEM_BASE | {"start_index", "end_index", "file_id"}  # openai_file_path_message_content_item.py
# models/orchestration/content_artifact.py
CONTENT_ARTIFACT = frozenset({"id", "title", "filepath", "source", "content", "type", "metadata"})
# models/constants/content_artifact_type_names.py
ARTIFACT_TYPES = frozenset({"ToolExecution", "ToolError", "WorkflowExecution", "File"})
# models/constants/agent_capability_categories.py
KNOWLEDGE_MANAGEMENT = "FoundationaLLM.KnowledgeManagement"
# The metadata the function-calling workflow and the code interpreter tool put on their artifacts
# (langchain/common/foundationallm_workflow_base.py, agent_core/.../foundationallm_code_interpreter_tool.py)
WORKFLOW_EXECUTION_METADATA = frozenset({"prompt_tokens", "completion_tokens", "completion_time_seconds"})
TOOL_EXECUTION_METADATA = frozenset({
    "original_user_prompt", "tool_input_prompt", "tool_input_files", "tool_generated_code", "tool_output",
    "tool_error", "tool_result",
})
FILE_METADATA = frozenset({
    "file_object_id", "original_file_name", "file_path", "file_size", "content_type", "conversation_id",
})
# The workflow's image extensions (an image becomes an image_file item, any other file a file_path annotation)
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tiff", ".ico", ".webp")
# models/operations/long_running_operation.py: LongRunningOperation (what the 202 answers)
LONG_RUNNING_OPERATION = frozenset({"operation_id", "status", "status_message", "last_updated", "result", "upn"})
OPERATION_STATUSES = frozenset({"InProgress", "Completed", "Failed"})  # Pending is Python-only (.NET refuses it)
# LangChainAPI/app/routers/status.py
STATUS = ("name", "instance_name", "version", "status")
INSTANCE_STATUS = ("name", "instance_id", "instance_name", "version", "status")
# The progress steps of the function-calling workflow, in order (status message; the result text is the
# message with "." replaced by "..."), and the end (LangChainAPI/app/routers/completions.py).
PROGRESS_WITH_TOOLS = ("Running agent workflow.", "Running agent tools.", "Preparing final response.")
COMPLETED_MESSAGE = "Operation completed successfully."
