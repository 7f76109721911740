"""The portal's one page: self-contained (inline CSS and JS, no CDN), allowed to run by a per-response
CSP nonce. Everything received is shown with textContent, never parsed as HTML."""

from __future__ import annotations

import html

from services.portal import traces_page
from services.portal.waterfall_assets import CSS, JS, page_head

AGENTS = ("code-interpreter", "custom-container-coder")

_PAGE = page_head("FoundationaLLM User Portal (callstack)") + """\
  main { max-width: 72rem; margin: 0 auto 2rem; padding: 0 1.2rem; }
  form { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 1rem; margin-top: 1rem; }
  label { font-weight: 600; display: block; margin-bottom: .3rem; font-size: .9rem; }
  textarea { width: 100%; box-sizing: border-box; min-height: 7rem; font: 0.9rem ui-monospace, monospace; }
  .row { display: flex; gap: 1rem; align-items: end; margin-top: .8rem; }
  button#send { padding: .45rem 1.4rem; font-size: .95rem; cursor: pointer; background: #1f883d; color: #fff;
                border: 1px solid #1a7f37; border-radius: 6px; }
  button:disabled { cursor: progress; opacity: .6; }
  dl { display: grid; grid-template-columns: 8rem 1fr; gap: .3rem .8rem; margin: 0; font-size: .9rem; }
  dt { font-weight: 600; color: var(--muted); }
  dd { margin: 0; font-family: ui-monospace, monospace; word-break: break-all; }
  pre { background: #0f172a; color: #e2e8f0; padding: .8rem; border-radius: 6px; white-space: pre-wrap;
        min-height: 2rem; margin: .8rem 0 0; }
  #files img { max-width: 100%; border: 1px solid var(--line); border-radius: 4px; margin-top: .6rem; display: block; }
  #files a { display: inline-block; margin: .5rem .8rem 0 0; }
  #error { color: var(--err); margin-top: .6rem; white-space: pre-wrap; }
  [hidden] { display: none !important; }
</style>
</head>
<body data-state="idle">
<header class="top"><b>FoundationaLLM User Portal</b>
  <a class="here" href="./">Ask</a><a href="traces">Traces</a></header>
<main>
<form id="ask">
  <label for="prompt">Prompt</label>
  <textarea id="prompt" name="prompt" required placeholder="Ask the agent; Ctrl+Enter sends"></textarea>
  <div class="row">
    <div><label for="agent">Agent</label><select id="agent" name="agent">__AGENTS__</select></div>
    <button id="send" type="submit">Send</button>
  </div>
  <div id="error" role="alert"></div>
</form>
<section class="panel" aria-live="polite">
  <dl>
    <dt>Status</dt><dd id="status">-</dd>
    <dt>Message</dt><dd id="status-message"></dd>
    <dt>Operation</dt><dd id="operation-id"></dd>
    <dt>Trace</dt>
    <dd><span id="trace-id"></span> <a id="jaeger-link" target="_blank" rel="noopener" hidden>open in Jaeger</a></dd>
    <dt>Elapsed</dt><dd id="elapsed"></dd>
  </dl>
  <pre id="answer"></pre>
  <div id="files"></div>
</section>
<section class="panel" id="trace-panel" hidden>
  <h2>Trace of this answer <a id="trace-open" class="muted" href="traces">open on the traces page</a></h2>
  <div id="trace-status" class="muted"></div>
  <div id="trace"></div>
</section>
</main>
<script nonce="__NONCE__">
"use strict";
__JS__
const $ = (id) => document.getElementById(id);
const problem = (body, code) => (body && (body.detail || body.title)) || ("HTTP " + code);

function show(view) {
  $("status").textContent = view.status || "-";
  $("status").className = view.status || "";
  $("status-message").textContent = view.done ? (view.status === "Failed" ? (view.status_message || "") : "")
                                              : (view.status_message || "");
  if (view.operation_id) $("operation-id").textContent = view.operation_id;
  if (view.trace_id) $("trace-id").textContent = view.trace_id;
  if (view.jaeger_url) { $("jaeger-link").href = view.jaeger_url; $("jaeger-link").hidden = false; }
  if (view.done) { $("answer").textContent = view.answer || ""; showFiles(view.files || []); }
}

function showFiles(files) {
  const box = $("files");
  box.replaceChildren();
  for (const file of files) {
    if (file.kind === "image") {
      const image = el("img", {src: file.url, alt: file.name || "image result"});
      image.addEventListener("error", () => image.replaceWith(el("div", {class: "err",
        text: "✗ the image " + (file.name || "") + " could not be fetched through Core's files route"})));
      box.append(image);
    }
    else box.append(el("a", {href: file.url, download: file.name || "file", text: "⬇ " + (file.name || "file")}));
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function showTrace(traceId) {
  $("trace-panel").hidden = false;
  $("trace-open").href = "traces#trace=" + traceId;
  $("trace-status").textContent = "loading the trace…";
  let last = -1, stable = 0, view = null;
  for (let attempt = 0; attempt < 40 && stable < 2; attempt++) {
    await sleep(attempt ? 400 : 250);  // services export their spans every ~200 ms
    try { view = await fetchJson("api/traces/" + traceId); } catch (error) {
      if (error.status !== 404) { $("trace-status").textContent = "trace unavailable: " + error.message; return; }
      continue;
    }
    const count = view.spans.length;
    const waited = view.spans.some((s) => s.name === "portal.wait_for_result");
    stable = count === last && waited ? stable + 1 : 0;
    last = count;
    $("trace").replaceChildren(waterfall(view, (id) => "traces#trace=" + id));
  }
  $("trace-status").textContent = view ? "" : "the trace has not reached the trace store";
  document.body.dataset.trace = view ? "shown" : "missing";
}

async function getJson(url, options) {  // submission and status: the problem body's detail on errors
  const response = await fetch(url, options);
  let body = null;
  try { body = await response.json(); } catch (_) { /* not JSON */ }
  if (!response.ok) throw new Error(problem(body, response.status));
  return body;
}

async function send(event) {
  event.preventDefault();
  for (const id of ["status-message", "operation-id", "trace-id", "answer", "error", "elapsed"]) $(id).textContent = "";
  $("files").replaceChildren(); $("trace").replaceChildren(); $("trace-panel").hidden = true;
  delete document.body.dataset.trace;
  $("jaeger-link").hidden = true;
  $("send").disabled = true;
  document.body.dataset.state = "running";
  const started = performance.now();
  const seconds = () => ((performance.now() - started) / 1000).toFixed(1) + " s";
  const tick = setInterval(() => { $("elapsed").textContent = seconds(); }, 100);
  try {
    $("status").textContent = "Submitting";
    let view = await getJson("api/completions", {
      method: "POST",
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify({prompt: $("prompt").value, agent_name: $("agent").value}),
    });
    const jaeger = view.jaeger_url;
    show(view);
    while (!view.done) {
      const seen = view.version === undefined ? "" : "&seen=" + view.version;
      view = await getJson("api/completions/" + encodeURIComponent(view.operation_id) + "?wait=10" + seen);
      view.jaeger_url = view.jaeger_url || jaeger;
      show(view);
    }
    document.body.dataset.state = "done";
    if (view.trace_id) showTrace(view.trace_id);
  } catch (error) {
    $("status").textContent = "Error";
    $("status").className = "Error";
    $("error").textContent = String(error && error.message || error);
    document.body.dataset.state = "error";
  } finally {
    clearInterval(tick);
    $("elapsed").textContent = Math.round(performance.now() - started) + " ms";
    $("send").disabled = false;
  }
}

$("ask").addEventListener("submit", send);
$("prompt").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) $("ask").requestSubmit();
});
</script>
</body>
</html>
"""


def render(nonce: str, agents: tuple[str, ...] = AGENTS) -> str:
    options = "".join(f'<option value="{html.escape(a)}">{html.escape(a)}</option>' for a in agents)
    return (_PAGE.replace("__CSS__", CSS).replace("__JS__", JS).replace("__NONCE__", nonce)
            .replace("__AGENTS__", options))


def render_traces(nonce: str) -> str:
    return traces_page.PAGE.replace("__CSS__", CSS).replace("__JS__", JS).replace("__NONCE__", nonce)


def content_security_policy(nonce: str) -> str:
    return (
        f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; connect-src 'self'; "
        "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
