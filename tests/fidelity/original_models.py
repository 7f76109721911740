"""The original's response models, transcribed as field sets (wire names) from foundationallm/foundationallm:

- Message: src/dotnet/Common/Models/Conversation/Message.cs (System.Text.Json, camelCase; operation_id,
  attachments, content and status by JsonPropertyName). ASP.NET Core writes nulls, so every field is present.
- MessageContent: src/dotnet/Common/Models/Conversation/MessageContent.cs.
- LongRunningOperation: src/dotnet/Common/Models/Orchestration/LongRunningOperation.cs.
- CompletionResponse: src/dotnet/Common/Models/Orchestration/Response/CompletionResponseBase.cs and
  CompletionResponse.cs (what Orchestration's and Gatekeeper's status routes put in ``result`` once an
  operation ended).
- ContentArtifact and AnalysisResult: the property lists of §2.2 of FOUNDATIONALLM-CONTRACTS.md.
"""

MESSAGE_FIELDS = frozenset({
    "id", "type", "sessionId", "operation_id", "timeStamp", "sender", "senderDisplayName", "tokens", "text",
    "textRewrite", "rating", "ratingComments", "upn", "deleted", "vector", "completionPromptId",
    "expectedCompletion", "contentArtifacts", "analysisResults", "attachments", "attachmentDetails", "content",
    "status",
})
MESSAGE_CONTENT_FIELDS = frozenset({"type", "fileName", "value"})
MESSAGE_CONTENT_TYPES = frozenset({"text", "image_file", "file_path", "html"})  # MessageContentItemTypes
LONG_RUNNING_OPERATION_FIELDS = frozenset({
    "id", "type", "operation_id", "status", "status_message", "upn", "last_updated", "ttl", "prompt_tokens", "result",
})
COMPLETION_RESPONSE_FIELDS = frozenset({
    "operation_id", "completion", "content", "analysis_results", "content_artifacts", "conversation_name",
    "user_prompt", "user_prompt_rewrite", "full_prompt", "prompt_template", "agent_name", "prompt_tokens",
    "completion_tokens", "total_tokens", "total_cost", "deleted", "errors", "is_error", "user_prompt_embedding",
})
CONTENT_ARTIFACT_FIELDS = frozenset({"id", "title", "filepath", "source", "content", "type", "metadata"})
OPERATION_STATUSES = frozenset({"InProgress", "Completed", "Failed"})  # OperationStatus.cs
