"""The end-to-end time of one completion, from the portal's submission to the client seeing the
result, cut into the chain's phases at span boundaries.

Spans used (first match by start time unless said otherwise):
  R  the trace's root (``portal.submit`` when the portal submitted)
  C  CoreAPI SERVER ``POST /instances/{instanceId}/async-completions``  (required: marks an operation trace)
  G  the first GatekeeperAPI SERVER span (absent when the gatekeeper is bypassed)
  O  OrchestrationAPI SERVER ``POST /instances/{instanceId}/async-completions``
  B  ``orchestration.build``;  K = ContextAPI SERVER ``POST /instances/{instanceId}/codeSessions`` spans
  L  LangChainAPI SERVER ``POST /instances/{instanceId}/async-completions`` (answers 202)
  E  the interpreter runs (``code.execute``): E1 the first, En the last to end
  T  LangChain's tool call (``execute_tool code_interpreter``) that holds E1 (else E1's ContextAPI
     executeCode ancestor, else E1's parent)
  W  ``langchain.write_result``;  S = the last-ending StateAPI SERVER ``PUT .../operations/{operationId}``
     under W (the Completed status write; W's end when there is none)
  P  ``portal.wait_for_result``
Traces of earlier versions name E ``execute_tool code_interpreter`` (in the provider) and T
``langchain.tool_call``; both are read (:func:`is_execution`, :func:`is_tool_call`). Their services
(``core-api``, ...) read as today's (``CoreAPI``, ...): see ``telemetry.analysis.traces``.
Spans are picked by service, kind and name, so further SERVER spans of a service (FoundationaLLM's own
activities, such as ``AsyncCompletions_StartCompletionOperation`` inside Core's request span) change
nothing; G is the exception, any GatekeeperAPI SERVER span, and the first by start is its request span.

Phases (each is ``end - start`` of the boundaries named; they add up to ``end_to_end``; each includes
the network time of the call to the next hop):
  portal_to_core       R.start -> C.start      portal client, network, until the Core API has the request
  gatekeeper           G.start -> min(G.end, O.start); 0 without G
  core                 C.start -> O.start, less gatekeeper
  code_session_create  sum of K durations inside B; 0 without K
  orchestration_build  B.start -> B.end, less code_session_create
  orchestration_other  O.start -> L.start, less B (operation record, dispatch to LangChain)
  agent                L.start -> T.start      202, background workflow, model calls before the tool
                       (L.start -> W.start when the agent ran no code: the next three are then absent)
  queue_wait           T.start -> E1.start     tool call, Context API, provider, session acquire
  execution            E1.start -> En.end      the interpreter run(s)
  after_execution      En.end -> W.start       result back through the hops, final model answer
  result_write         W.start -> S.end        result then Completed status in the State API
  poll_delay           S.end -> P.end          the result was ready; the client had not seen it yet
  end_to_end           R.start -> P.end (R.end without P)

A phase whose boundary spans are missing is absent (``None``), never an error; ``gatekeeper``
and ``code_session_create`` are 0 when their optional hop is absent. Status polls are their own
traces (root ``portal.poll``): they have no C and get no phases.
"""

from __future__ import annotations

from collections.abc import Callable

from telemetry import conventions as c
from telemetry.analysis.traces import Span, Trace

PHASES: tuple[tuple[str, str], ...] = (
    ("portal_to_core", "portal submission until the Core API receives it"),
    ("gatekeeper", "gatekeeper checks before orchestration (0 when bypassed)"),
    ("core", "Core API routing to orchestration"),
    ("orchestration_build", "orchestration build: agent and tools"),
    ("code_session_create", "code session create at the Context API"),
    ("orchestration_other", "operation record and dispatch to LangChain"),
    ("agent", "LangChain 202, workflow and model calls before the tool"),
    ("queue_wait", "queue/wait from the tool call to the interpreter starting"),
    ("execution", "code execution in the interpreter"),
    ("after_execution", "result back through the hops, final answer"),
    ("result_write", "result and Completed status written to the State API"),
    ("poll_delay", "result ready until the client saw it (polling delay)"),
)
PHASE_NAMES = tuple(name for name, _ in PHASES)
POLL_ROOTS = (c.SPAN_PORTAL_POLL, f"GET {c.ROUTE_COMPLETION_STATUS}")
_SUBMIT = f"POST {c.ROUTE_ASYNC_COMPLETIONS}"


def is_poll_trace(trace: Trace) -> bool:
    return trace.root.name in POLL_ROOTS


def is_execution(service: str, name: str) -> bool:
    """An interpreter run: ``code.execute``, or its earlier name where a provider (not LangChain) recorded it."""
    return name == c.SPAN_CODE_EXECUTE or (name == c.SPAN_CODE_EXECUTE_BEFORE and service != c.LANGCHAIN_API)


def execution_ms(trace: Trace) -> float | None:
    """The interpreter's time in one trace, in ms to the spans' nanosecond: the summed durations of its
    interpreter runs (:func:`is_execution`), or None when it ran no code. The data plane's own figure
    (``code.execution.time_ms``, its executionTimeInMilliseconds) is whole milliseconds: ``print(1)`` reads 0."""
    durations = [span.duration_ns for span in trace.spans if is_execution(span.service, span.name)]
    return sum(durations) / 1e6 if durations else None


def is_tool_call(span: Span) -> bool:
    """LangChain's span of the code interpreter tool call, by its name now or before."""
    return span.service == c.LANGCHAIN_API and span.name in (c.SPAN_LANGCHAIN_TOOL_CALL,
                                                             c.SPAN_LANGCHAIN_TOOL_CALL_BEFORE)


_NAME_ROLES = {
    c.SPAN_ORCHESTRATION_BUILD: "build",
    c.SPAN_LANGCHAIN_WRITE_RESULT: "write",
    c.SPAN_PORTAL_WAIT: "wait",
}
_SERVER_ROLES = {
    (c.CORE_API, _SUBMIT): "core", (c.ORCHESTRATION_API, _SUBMIT): "orch", (c.LANGCHAIN_API, _SUBMIT): "langchain",
}


def _roles(trace: Trace) -> tuple[dict[str, Span], list[Span]]:
    """The first span (by start) of each role, and every execution span, in one pass."""
    first: dict[str, Span] = {}
    executions: list[Span] = []
    for span in trace.spans:
        role = "execution" if is_execution(span.service, span.name) else _NAME_ROLES.get(span.name)
        if role is None and span.kind == "SERVER":
            role = "gate" if span.service == c.GATEKEEPER_API else _SERVER_ROLES.get((span.service, span.name))
        if role == "execution":
            executions.append(span)
        elif role is not None and role not in first:
            first[role] = span
    return first, executions


def _server(service: str, name: str) -> Callable[[Span], bool]:
    return lambda s: s.service == service and s.kind == "SERVER" and s.name == name


def _tool_start(trace: Trace, execution: Span) -> int:
    ancestors = list(trace.ancestors(execution))
    for match in (is_tool_call,
                  _server(c.CONTEXT_API, f"POST {c.ROUTE_EXECUTE_CODE}")):
        found = next((a for a in ancestors if match(a)), None)
        if found is not None:
            return found.start_ns
    return ancestors[0].start_ns if ancestors else execution.start_ns


def _result_ready(trace: Trace, write: Span) -> int:
    status_writes = [s for s in trace.descendants(write)
                     if s.service == c.STATE_API and s.kind == "SERVER" and s.name == f"PUT {c.ROUTE_OPERATION}"]
    return max((s.end_ns for s in status_writes), default=write.end_ns)


def _between(start: int | None, end: int | None) -> int | None:
    return None if start is None or end is None else end - start


def trace_phases(trace: Trace) -> dict[str, float | None] | None:
    """Phases of one operation trace in milliseconds (plus ``end_to_end``), or None for other traces."""
    first, executions = _roles(trace)
    core = first.get("core")
    if core is None:
        return None
    root = trace.root
    gate, orch, build = first.get("gate"), first.get("orch"), first.get("build")
    langchain, write, wait = first.get("langchain"), first.get("write"), first.get("wait")

    o_start = orch.start_ns if orch else None
    gatekeeper = 0 if gate is None else _between(gate.start_ns, min(gate.end_ns, o_start or gate.end_ns))
    sessions = 0
    if build is not None:
        sessions = sum(s.duration_ns for s in trace.descendants(build)
                       if _server(c.CONTEXT_API, f"POST {c.ROUTE_CODE_SESSIONS}")(s))
    first_exec = executions[0] if executions else None
    last_end = max((s.end_ns for s in executions), default=None)
    t_start = _tool_start(trace, first_exec) if first_exec else None
    ready = _result_ready(trace, write) if write else None
    end = wait.end_ns if wait else root.end_ns

    core_ns = _between(core.start_ns, o_start)
    orch_ns = _between(o_start, langchain.start_ns if langchain else None)
    ns: dict[str, int | None] = {
        "portal_to_core": core.start_ns - root.start_ns,
        "gatekeeper": gatekeeper,
        "core": None if core_ns is None or gatekeeper is None else core_ns - gatekeeper,
        "orchestration_build": build.duration_ns - sessions if build else None,
        "code_session_create": sessions if build else None,
        "orchestration_other": None if orch_ns is None else orch_ns - (build.duration_ns if build else 0),
        "agent": _between(langchain.start_ns if langchain else None,
                          t_start if first_exec else write.start_ns if write else None),
        "queue_wait": _between(t_start, first_exec.start_ns if first_exec else None),
        "execution": _between(first_exec.start_ns if first_exec else None, last_end),
        "after_execution": _between(last_end, write.start_ns if write else None),
        "result_write": _between(write.start_ns if write else None, ready),
        "poll_delay": _between(ready, wait.end_ns) if wait else None,
        "end_to_end": end - root.start_ns,
    }
    return {name: None if value is None else value / 1e6 for name, value in ns.items()}
