"""A code exception behind the custom container, through the real chain.

The Code Session API answers it as FoundationaLLM's image does (200, "The code execution failed with a ...
error"), and this project's Context API still makes it a Failed execution carrying the traceback: the person
sees the traceback, as before. Telemetry: the HTTP spans of that 200 stay unset (no hop failed, so the hop
error alerts stay quiet); the ``code.execute`` span is the one that is ERROR, with the exception's type.
"""

from __future__ import annotations

import pytest

from telemetry import conventions as c
from tests.chain.conftest import LiveChain
from tests.chain.spans import assert_one_connected_tree, one

SERVER, CLIENT, UNSET, ERROR = 2, 3, 0, 2
FAILING = "Run it:\n```python\nprint('before the error')\nraise ValueError('bad value')\n```"

pytestmark = pytest.mark.chain


def test_a_code_exception_in_the_custom_container_reaches_the_person_with_its_traceback(live: LiveChain) -> None:
    answer = live.ask(FAILING, "custom-container-coder")
    assert answer["status"] == "Completed", answer
    text = answer["answer"]
    assert "before the error" in text and "Traceback" in text and "ValueError: bad value" in text, text

    spans = live.spans(answer["trace_id"], {c.PORTAL, c.CORE_API, c.CONTEXT_API, c.CODE_SESSION_API})
    assert_one_connected_tree(spans)
    execute = one(spans, c.SPAN_CODE_EXECUTE, c.CODE_SESSION_API)
    assert execute.status_code == ERROR and execute.attributes["error.type"] == "ValueError"
    server = [s for s in spans if s.service == c.CODE_SESSION_API and s.kind == SERVER and "/code/execute" in s.name]
    client = [s for s in spans if s.service == c.CONTEXT_API and s.kind == CLIENT
              and "/code/execute" in str(s.attributes.get("url.full", ""))]
    assert len(server) == 1 and len(client) == 1, [(s.service, s.name) for s in spans]
    assert server[0].attributes["http.response.status_code"] == 200
    assert (server[0].status_code, client[0].status_code) == (UNSET, UNSET)
