"""Names of everything the chain puts on the wire for observers: services, spans, attributes, metrics.

One place, so that services, the trace analysis, the collector config, dashboards and alert rules
agree. HTTP spans follow the stable HTTP semantic conventions (OTEL_SEMCONV_STABILITY_OPT_IN=http):
server spans are named ``{method} {route}`` (``POST /instances/{instanceId}/async-completions``),
client spans by the method alone (``POST``).

The shape of one completion's trace (service.name: span; FoundationaLLM's service names, services/registry.py):

    UserPortal: portal.submit                   root; from the click to the client seeing the end
      UserPortal: POST                          CLIENT, the submission
        CoreAPI: POST /instances/{instanceId}/async-completions
          [GatekeeperAPI: POST ... -> gatekeeper.check_prompt]
          OrchestrationAPI: POST /instances/{instanceId}/async-completions
            orchestration.build                 agent + tools + code sessions
              ContextAPI: POST /instances/{instanceId}/codeSessions
            StateAPI: POST /instances/{instanceId}/operations/{operationId}
            LangChainAPI: POST /instances/{instanceId}/async-completions   (202)
              langchainapi_submit_completion_request        SERVER (the original's), then:
                StateAPI: POST .../operations/{operationId}/claim           (InProgress)
                langchainapi_create_completion_response     SERVER, background; child of the submission
                  langchain_prepare_plugin_workflow         SERVER
                  langchain_invoke_plugin_workflow          SERVER
                    {workflow}_workflow
                      {workflow}_workflow_llm_call > chat {model}
                      {workflow}_tool_call      tool_call_id, tool_call_function
                        execute_tool code_interpreter   the tool call: gen_ai.tool.name, .call.id, .type
                          ContextAPI: POST /instances/{instanceId}/codeSessions/{sessionId}/executeCode
                            DynamicSessions: POST /executions   (or PythonCodeSessionAPI: POST /code/execute)
                              code_session.acquire      warm pool hit / cold start / existing session
                              code.execute              the interpreter run
                      {workflow}_final_llm_call > chat {model}
                      [{workflow}_get_conversation_name > chat {model}]   new conversations
                  langchain.write_result
                    StateAPI: POST .../result, then PUT .../operations/{operationId} (Completed)
      UserPortal: portal.wait_for_result        from the 202 to the client seeing the end

Status polls are their own short traces (root ``portal.poll`` or the caller's own), each with a span
link to the operation's trace; the poll's server spans carry foundationallm.operation_id.
"""

from __future__ import annotations

from services.registry import HOPS

SERVICE_NAMESPACE = "FoundationaLLM"  # the original's; Azure Monitor's cloud role is "FoundationaLLM.CoreAPI"

# service.name of each hop, from the registry of hops (services/registry.py). The same name is the hop in
# foundationallm.failed_hop, in "CoreAPI: ..." error messages and in metric and alert labels.
PORTAL = HOPS["portal"].service_name
CORE_API = HOPS["core_api"].service_name
GATEKEEPER_API = HOPS["gatekeeper_api"].service_name
ORCHESTRATION_API = HOPS["orchestration_api"].service_name
LANGCHAIN_API = HOPS["langchain_api"].service_name
STATE_API = HOPS["state_api"].service_name
CONTEXT_API = HOPS["context_api"].service_name
DYNAMIC_SESSIONS = HOPS["dynamic_sessions"].service_name
CODE_SESSION_API = HOPS["code_session_api"].service_name

CHAIN_SERVICES = tuple(hop.service_name for hop in HOPS.values())

# Traces and records of earlier versions name the hops by their deployment names ("core-api", namespace
# "foundationallm"): readers map those to today's names.
SERVICE_NAMES_BEFORE: dict[str, str] = {hop.name: hop.service_name for hop in HOPS.values()}


def service_name_now(name: str) -> str:
    """Today's service.name (or hop name) for one an earlier version recorded; other names unchanged."""
    return SERVICE_NAMES_BEFORE.get(name, name)


# --- span names (besides the automatic HTTP server/client spans) ---
SPAN_PORTAL_SUBMIT = "portal.submit"
SPAN_PORTAL_WAIT = "portal.wait_for_result"
SPAN_PORTAL_POLL = "portal.poll"
SPAN_GATEKEEPER_CHECK = "gatekeeper.check_prompt"
SPAN_ORCHESTRATION_BUILD = "orchestration.build"
# Core reading a poll's status: holds the link to the operation, and a failed read (answered InProgress)
SPAN_CORE_POLL = "core.operation_status"
# The background workflow (SERVER, as the original's activity of the same work; below its submission span)
SPAN_LANGCHAIN_WORKFLOW = "langchainapi_create_completion_response"
SPAN_LANGCHAIN_WORKFLOW_BEFORE = "langchain.workflow"  # its name in traces of earlier versions
SPAN_EXECUTE_TOOL_PREFIX = "execute_tool"  # "execute_tool {gen_ai.tool.name}": one per tool call
SPAN_LANGCHAIN_TOOL_CALL = "execute_tool code_interpreter"  # the code interpreter tool's call
SPAN_LANGCHAIN_TOOL_CALL_BEFORE = "langchain.tool_call"  # its name in traces of earlier versions
SPAN_LANGCHAIN_WRITE_RESULT = "langchain.write_result"
SPAN_CHAT_PREFIX = "chat"  # "chat {model}"
SPAN_CODE_SESSION_ACQUIRE = "code_session.acquire"
SPAN_CODE_EXECUTE = "code.execute"  # the interpreter run, under the tool call
SPAN_CODE_EXECUTE_BEFORE = "execute_tool code_interpreter"  # its name in traces of earlier versions

# Server span names of the routes the latency phases are cut at.
ROUTE_ASYNC_COMPLETIONS = "/instances/{instanceId}/async-completions"
ROUTE_COMPLETION_STATUS = "/instances/{instanceId}/async-completions/{operationId}/status"
ROUTE_CODE_SESSIONS = "/instances/{instanceId}/codeSessions"
ROUTE_CODE_SESSION = "/instances/{instanceId}/codeSessions/{sessionId}"
ROUTE_EXECUTE_CODE = "/instances/{instanceId}/codeSessions/{sessionId}/executeCode"
ROUTE_OPERATION = "/instances/{instanceId}/operations/{operationId}"
ROUTE_OPERATION_RESULT = "/instances/{instanceId}/operations/{operationId}/result"

# --- attributes ---
ATTR_INSTANCE_ID = "foundationallm.instance_id"
ATTR_OPERATION_ID = "foundationallm.operation_id"
ATTR_CONVERSATION_ID = "foundationallm.conversation_id"
ATTR_USER_ID = "foundationallm.user_id"  # an id only: never the UPN or the identity JSON
ATTR_AGENT_NAME = "foundationallm.agent_name"
ATTR_TOOL_NAME = "foundationallm.tool_name"
ATTR_TOOL_NAMES = "foundationallm.tool_names"
ATTR_OPERATION_STATUS = "foundationallm.operation.status"  # on state writes and status answers
ATTR_FAILED_HOP = "foundationallm.failed_hop"  # set where an operation is failed, names the hop
ATTR_OPERATION_CLAIMANT = "foundationallm.operation.claimant"  # the worker replica that runs the operation
ATTR_GATEKEEPER_DECISION = "foundationallm.gatekeeper.decision"  # allowed | blocked | bypassed
ATTR_GATEKEEPER_CHECKS = "foundationallm.gatekeeper.checks"
ATTR_CODE_SESSION_ID_HASH = "foundationallm.code_session.id_hash"  # sha256 prefix: ids are secrets
ATTR_CODE_SESSION_PROVIDER = "foundationallm.code_session.provider"
ATTR_CODE_SESSION_LANGUAGE = "foundationallm.code_session.language"
ATTR_POLL_COUNT = "foundationallm.poll.count"
ATTR_PROMPT_SIZE = "foundationallm.prompt.size_bytes"
ATTR_PROMPT_SHA256 = "foundationallm.prompt.sha256"
ATTR_PROMPT_TEXT = "foundationallm.prompt.text"  # only with FLLM_CAPTURE_PROMPTS=true

# FoundationaLLM's own .NET activities (TelemetryActivityNames) and tags (TelemetryActivityTagNames), beside
# ours, for queries written against a FoundationaLLM deployment. FoundationaLLM-UPN is a keyed hash here.
SPAN_FLLM_CORE_START_COMPLETION = "AsyncCompletions_StartCompletionOperation"  # CoreAPI, SERVER
SPAN_FLLM_CORE_FILES_DOWNLOAD = "Files_Download"  # CoreAPI, SERVER
SPAN_FLLM_USER_PROMPT_REWRITE = "UserPromptRewrite_LLM"  # OrchestrationAPI, INTERNAL
TAG_FLLM_INSTANCE_ID = "FoundationaLLM-InstanceId"
TAG_FLLM_OPERATION_ID = "FoundationaLLM-OperationId"
TAG_FLLM_CONVERSATION_ID = "FoundationaLLM-ConversationId"
TAG_FLLM_UPN = "FoundationaLLM-UPN"  # HMAC-SHA256 (telemetry/id_hash.py) of the lowercased UPN, 16 hex
TAG_FLLM_USER_ID = "FoundationaLLM-UserId"
TAG_FLLM_FILE_PROVIDER = "FoundationaLLM-FileProvider"
TAG_FLLM_FILE_ID = "FoundationaLLM-FileId"
TAG_FLLM_NOT_AVAILABLE = "N/A"  # the original's value for a missing tag

# FoundationaLLM's LangChain API activities (its Python telemetry, same places of the trace) and their tag
# names, beside ours. {workflow} is the agent workflow's name (agents.py), {tool} a tool's. The original's
# user_identity tag (the identity JSON) is left out: foundationallm.user_id carries the user's id.
SPAN_FLLM_LANGCHAIN_SUBMIT = "langchainapi_submit_completion_request"  # SERVER, under the request's span
SPAN_FLLM_LANGCHAIN_CREATE_RESPONSE = SPAN_LANGCHAIN_WORKFLOW  # SERVER, the background task
SPAN_FLLM_LANGCHAIN_PREPARE = "langchain_prepare_plugin_workflow"  # SERVER: tools and workflow built
SPAN_FLLM_LANGCHAIN_INVOKE = "langchain_invoke_plugin_workflow"  # SERVER: the workflow run
SPAN_FLLM_WORKFLOW = "{workflow}_workflow"
SPAN_FLLM_WORKFLOW_LLM_CALL = "{workflow}_workflow_llm_call"  # the first model call (tools offered)
SPAN_FLLM_TOOL_CALL = "{workflow}_tool_call"  # one per tool call, around execute_tool {tool}
SPAN_FLLM_FINAL_LLM_CALL = "{workflow}_final_llm_call"  # the model call after the tool results
SPAN_FLLM_CONVERSATION_NAME = "{workflow}_get_conversation_name"  # new conversations only
TAG_LC_OPERATION_ID = "operation_id"
TAG_LC_INSTANCE_ID = "instance_id"
TAG_LC_AGENT_NAME = "agent_name"
TAG_LC_CONVERSATION_ID = "conversation_id"
TAG_LC_TOOL_CALL_ID = "tool_call_id"
TAG_LC_TOOL_CALL_FUNCTION = "tool_call_function"

# GenAI semantic conventions (development status) for the model and tool spans.
ATTR_GEN_AI_OPERATION = "gen_ai.operation.name"  # chat | execute_tool
ATTR_GEN_AI_PROVIDER = "gen_ai.provider.name"
ATTR_GEN_AI_MODEL = "gen_ai.request.model"
ATTR_GEN_AI_TOOL_NAME = "gen_ai.tool.name"
ATTR_GEN_AI_TOOL_CALL_ID = "gen_ai.tool.call.id"
ATTR_GEN_AI_TOOL_TYPE = "gen_ai.tool.type"

# The interpreter run (execute_tool code_interpreter) and the session acquire step.
ATTR_CODE_EXECUTION_ID = "code.execution.id"
ATTR_CODE_SIZE = "code.size_bytes"
ATTR_CODE_SHA256 = "code.sha256"
ATTR_CODE_STATUS = "code.execution.status"  # Succeeded | Failed
ATTR_CODE_TIMED_OUT = "code.execution.timed_out"
ATTR_CODE_EXECUTION_MS = "code.execution.time_ms"  # executionTimeInMilliseconds
ATTR_CODE_STDOUT_SIZE = "code.stdout.size_bytes"
ATTR_CODE_STDERR_SIZE = "code.stderr.size_bytes"
ATTR_CODE_EXECUTION_TYPE = "code.execution.type"  # Synchronous | Asynchronous
ATTR_CODE_SESSION_ACQUIRE = "code_session.acquire.result"  # warm | cold | existing
# What the execution cost its session's cgroup (on code.execute, where the session has one):
ATTR_CODE_OOM_KILLS = "code_session.memory.oom_kills"  # processes killed at the memory limit meanwhile
ATTR_CODE_MEMORY_PEAK = "code_session.memory.peak_bytes"  # the session's peak so far
ATTR_CODE_MEMORY_LIMIT = "code_session.memory.limit_bytes"
ATTR_CODE_CPU_TIME = "code_session.cpu.time_s"  # CPU time of the session's processes meanwhile
ATTR_CODE_CPU_THROTTLED = "code_session.cpu.throttled_periods"  # CFS periods held back by its quota

# --- metrics (OTel names; Prometheus adds unit and _total suffixes) ---
METRIC_CODE_EXECUTION_DURATION = "foundationallm.code_execution.duration"  # s; provider, outcome
METRIC_CODE_SESSION_ACQUIRE = "foundationallm.code_session.acquisitions"  # {acquisition}; result
# From the sessions' cgroups, after each execution (0 added when none: the series exist from the first one)
METRIC_CODE_SESSION_OOM_KILLS = "foundationallm.code_session.oom_kills"  # {process}; provider
METRIC_CODE_SESSION_THROTTLED = "foundationallm.code_session.throttled_executions"  # {execution}; provider
METRIC_OPERATION_DURATION = "foundationallm.operation.duration"  # s; agent, status
METRIC_OPERATIONS = "foundationallm.operations"  # {operation}; agent, status, failed_hop

METRIC_ATTR_PROVIDER = "code_session_provider"
METRIC_ATTR_OUTCOME = "outcome"  # Succeeded | Failed | TimedOut
METRIC_ATTR_ACQUIRE = "result"
METRIC_ATTR_AGENT = "agent_name"
METRIC_ATTR_STATUS = "status"
METRIC_ATTR_FAILED_HOP = "failed_hop"

# Histogram buckets that reach past the 220 s execution limit (seconds).
DURATION_BUCKETS_S = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 220.0, 300.0,
)


def execute_tool_span(tool_name: str) -> str:
    return f"{SPAN_EXECUTE_TOOL_PREFIX} {tool_name}"
