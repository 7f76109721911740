"""The portal's one page: self-contained (inline CSS and JS, no CDN), allowed to run by a per-response
CSP nonce. Everything received is shown with textContent, never parsed as HTML."""

from __future__ import annotations

import html

AGENTS = ("code-interpreter", "custom-container-coder")

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>FoundationaLLM User Portal (callstack)</title>
<style nonce="__NONCE__">
  :root { font-family: system-ui, sans-serif; color: #1b1f24; background: #f5f6f8; }
  main { max-width: 52rem; margin: 2rem auto; padding: 0 1rem; }
  h1 { font-size: 1.3rem; margin-bottom: 1rem; }
  form, section { background: #fff; border: 1px solid #d8dce2; border-radius: 8px; padding: 1rem; }
  section { margin-top: 1rem; }
  label { font-weight: 600; display: block; margin-bottom: .3rem; }
  textarea { width: 100%; box-sizing: border-box; min-height: 7rem; font: 0.95rem ui-monospace, monospace; }
  .row { display: flex; gap: 1rem; align-items: end; margin-top: .8rem; }
  button { padding: .5rem 1.4rem; font-size: 1rem; cursor: pointer; }
  button:disabled { cursor: progress; opacity: .6; }
  dl { display: grid; grid-template-columns: 9rem 1fr; gap: .3rem .8rem; margin: 0; }
  dt { font-weight: 600; color: #555; }
  dd { margin: 0; font-family: ui-monospace, monospace; word-break: break-all; }
  pre { background: #0f172a; color: #e2e8f0; padding: .8rem; border-radius: 6px; white-space: pre-wrap;
        min-height: 2rem; margin: .8rem 0 0; }
  .InProgress { color: #a16207; } .Completed { color: #15803d; } .Failed, .Error { color: #b91c1c; }
  #error { color: #b91c1c; margin-top: .6rem; white-space: pre-wrap; }
  [hidden] { display: none !important; }
</style>
</head>
<body data-state="idle">
<main>
<h1>FoundationaLLM User Portal <small>(callstack)</small></h1>
<form id="ask">
  <label for="prompt">Prompt</label>
  <textarea id="prompt" name="prompt" required placeholder="Ask the agent; Ctrl+Enter sends"></textarea>
  <div class="row">
    <div><label for="agent">Agent</label><select id="agent" name="agent">__AGENTS__</select></div>
    <button id="send" type="submit">Send</button>
  </div>
  <div id="error" role="alert"></div>
</form>
<section aria-live="polite">
  <dl>
    <dt>Status</dt><dd id="status">-</dd>
    <dt>Message</dt><dd id="status-message"></dd>
    <dt>Operation</dt><dd id="operation-id"></dd>
    <dt>Trace</dt>
    <dd><span id="trace-id"></span> <a id="jaeger-link" target="_blank" rel="noopener" hidden>open in Jaeger</a></dd>
    <dt>Elapsed</dt><dd id="elapsed"></dd>
  </dl>
  <pre id="answer"></pre>
</section>
</main>
<script nonce="__NONCE__">
"use strict";
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
  if (view.done) $("answer").textContent = view.answer || "";
}

async function getJson(url, options) {
  const response = await fetch(url, options);
  let body = null;
  try { body = await response.json(); } catch (_) { /* not JSON */ }
  if (!response.ok) throw new Error(problem(body, response.status));
  return body;
}

async function send(event) {
  event.preventDefault();
  for (const id of ["status-message", "operation-id", "trace-id", "answer", "error", "elapsed"]) $(id).textContent = "";
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
    return _PAGE.replace("__NONCE__", nonce).replace("__AGENTS__", options)


def content_security_policy(nonce: str) -> str:
    return (
        f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; connect-src 'self'; "
        "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
